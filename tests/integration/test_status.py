"""What the deployment is doing (lifecycle status, GET /api/status, the status page),
against the real database and RabbitMQ: the nodes and their heartbeat, who holds follow and
maintain, the ingest queue, the follower's and the maintainer's lag, and a source that
cannot be reached reported as that part's error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from psycopg import sql as pgsql

from lifecycle import sql
from lifecycle.models import CheckCursor, Event, Node, WatchedDatabase
from lifecycle.nodes import election, heartbeat
from lifecycle.people import tokens
from lifecycle.runtime.services import maintenance_conninfo
from tests import conftest
from tests.conftest import ROOT, free_port, wait_for
from tests.integration.people import as_role
from tests.services import require_postgres, require_rabbitmq

require_postgres()
require_rabbitmq()

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def status(*args: str, code: int = 0) -> str:
    """``lifecycle status``'s output, checked to exit with ``code`` (1: a part failed)."""
    out = io.StringIO()
    try:
        call_command("lifecycle", "status", *args, stdout=out)
        exited = 0
    except SystemExit as exc:
        exited = int(exc.code or 0)
    assert exited == code, out.getvalue()
    return out.getvalue()


@pytest.fixture
def app_db(make_database: Callable[..., str]) -> str:
    """An application's database with the capture's outbox (outbox.sql: create_schema), and
    two changes in it that no follower has copied: the oldest written 30 s ago."""
    url = make_database("test_status")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.load("outbox")["create_schema"])
        for age in (30, 5):
            conn.execute(
                "INSERT INTO lifecycle_capture.outbox (task_key, kind, status, at, txid,"
                " table_name, changed, changed_values, pid, db_user)"
                " VALUES ('t', 'update', 'DONE', now() - make_interval(secs => %s), 1,"
                " 'jobs', '{}', '{}', 1, 'me')",
                [age],
            )
    return url


@pytest.fixture(scope="module")
def own_database(django_db_setup: None) -> Iterator[str]:
    """A migrated inspector database of this module's own: the elected roles are the
    database's, and the suite's stack, when it runs, holds the test database's."""
    from django.db import connection

    name = f"{connection.settings_dict['NAME']}_status_{uuid.uuid4().hex[:6]}"[:63]
    with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": conftest.test_database_url().rsplit("/", 1)[0] + f"/{name}",
            },
            check=True,
            timeout=180,
        )
        yield name
    finally:
        with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


@pytest.fixture
def inspector(own_database: str, transactional_db: None) -> Iterator[None]:
    """This test's ORM, ``conninfo()`` and so the status on ``own_database``, emptied of
    what an earlier test of the module left."""
    from django.db import connection

    test_name = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = own_database
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE lifecycle_node, lifecycle_watched_database, lifecycle_event,"
            " lifecycle_check_cursor, lifecycle_api_token"
        )
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = test_name


@pytest.fixture
def held(settings: Any, inspector: None) -> Iterator[None]:
    """Node holder-node holds follow and maintain; standby-node asks for maintain too."""
    settings.LIFECYCLE_NODE = "holder-node"
    leads = [
        election.lead(role, threading.Event(), on_lost=print, exit_after=None)
        for role in election.ROLES
    ]
    settings.LIFECYCLE_NODE = "standby-node"
    stop = threading.Event()
    standby = threading.Thread(
        target=election.lead, args=("maintain", stop, print), kwargs={"exit_after": None}
    )
    standby.start()
    try:
        yield
    finally:
        stop.set()
        standby.join(10)
        for lead in leads:
            assert lead is not None
            lead.release()


def beating(settings: Any, name: str, roles: list[str], address: str = "") -> heartbeat.Heartbeat:
    settings.LIFECYCLE_NODE = name
    beat = heartbeat.Heartbeat(roles, address, beat=0.2)
    beat.start()
    return beat


def until(check: Any, what: str) -> Any:
    return wait_for(check, 10, interval=0.05, what=what)


def test_a_node_registers_beats_and_marks_itself_stopped(settings, caplog):
    # Given a node that starts its heartbeat
    beat = beating(settings, "beating-node", ["web", "ingest"], "http://127.0.0.1:8123")
    row = until(lambda: Node.objects.filter(name="beating-node").first(), "the node's row")
    # Then its row holds its roles, address and pid, and its seen time moves on
    assert row is not None and row.roles == ["web", "ingest"]
    assert row.address == "http://127.0.0.1:8123" and row.stopped_at is None
    first_seen = row.seen_at
    until(lambda: Node.objects.get(name="beating-node").seen_at > first_seen, "a beat")
    # And a row deleted meanwhile comes back at the next beat
    Node.objects.filter(name="beating-node").delete()
    until(lambda: Node.objects.filter(name="beating-node").exists(), "the row again")
    # But a row another process registered under the same name is left to it, and said
    Node.objects.filter(name="beating-node").update(pid=1, host="elsewhere")
    until(lambda: "registered the same node name" in caplog.text, "the warning")
    time.sleep(0.5)
    assert Node.objects.get(name="beating-node").host == "elsewhere"
    assert caplog.text.count("registered the same node name") == 1
    Node.objects.filter(name="beating-node").update(pid=row.pid, host=row.host)
    # When it stops cleanly, its row says so
    beat.stop()
    assert Node.objects.get(name="beating-node").stopped_at is not None
    listed = json.loads(status("--json"))["nodes"]
    assert {"name": "beating-node", "state": "stopped", "gone": False}.items() <= (
        next(n for n in listed if n["name"] == "beating-node").items()
    )


def test_a_heartbeat_that_cannot_reach_the_database_goes_on(settings, caplog, monkeypatch):
    # Given a node whose database is not there (a port nothing listens on)
    port = free_port()
    monkeypatch.setattr(
        heartbeat, "conninfo", lambda **_: f"host=127.0.0.1 port={port} dbname=x user=x"
    )
    beat = beating(settings, "lonely-node", ["ingest"])
    # Then it logs why, once, and keeps trying: never the node's end
    until(lambda: "heartbeat not recorded" in caplog.text, "the warning")
    time.sleep(0.6)  # a few more beats
    assert beat._thread.is_alive()
    beat.stop()
    assert caplog.text.count("heartbeat not recorded") == 1


def test_status_names_the_holder_the_standby_a_gone_node_and_the_lags(
    settings, held, app_db, channel
):
    # Given two nodes that beat, holder-node holding both roles, and one gone long ago
    beats = [
        beating(settings, "holder-node", ["web", "follow", "maintain"], "http://h:8000"),
        beating(settings, "standby-node", ["maintain"]),
    ]
    gone_at = timezone.now() - timedelta(minutes=10)
    Node.objects.create(
        name="gone-node", roles=["ingest"], pid=1, started_at=gone_at, seen_at=gone_at
    )
    # and a watched database with two changes not copied, one that cannot be reached
    WatchedDatabase.objects.create(name="billing", url=app_db)
    port = free_port()
    WatchedDatabase.objects.create(
        name="gone-db", url=f"postgres://app:s3cret-pw@127.0.0.1:{port}/app"
    )
    # and three events the maintainer has not passed yet
    newest = Event.objects.create(task_key="before", source="db", kind="update").id
    CheckCursor.objects.update_or_create(pk=1, defaults={"checked_through": newest})
    for n in range(3):
        Event.objects.create(task_key=f"after-{n}", source="db", kind="update")
    try:
        until(
            lambda: Node.objects.filter(name__in=["holder-node", "standby-node"]).count() == 2,
            "both nodes' rows",
        )
        # When a maintainer asks for the status, as JSON and as text (one part fails: 1)
        found = json.loads(status("--json", code=1))
        text = status(code=1)
    finally:
        for beat in beats:
            beat.stop()

    # Then the nodes are listed with their roles, the gone one as gone
    nodes = {n["name"]: n for n in found["nodes"]}
    assert nodes["holder-node"]["roles"] == ["web", "follow", "maintain"]
    assert nodes["holder-node"]["state"] == "up" and nodes["holder-node"]["seen"]
    assert nodes["holder-node"]["address"] == "http://h:8000"
    assert nodes["standby-node"]["roles"] == ["maintain"] and not nodes["standby-node"]["gone"]
    assert nodes["gone-node"]["gone"] and nodes["gone-node"]["state"] == "gone"
    # and the holder of both singletons, not the standby
    assert found["singletons"] == {"follow": "holder-node", "maintain": "holder-node"}
    # the ingest queue, which exists and is empty
    assert found["ingest"]["queue"] == f"{settings.LIFECYCLE_NAMESPACE}.ingest"
    assert found["ingest"]["depth"] == 0 and found["ingest"]["error"] is None
    # the follower's lag per database, the unreachable one saying so, redacted
    lags = {d["name"]: d for d in found["follow"]["databases"]}
    assert lags["billing"]["pending"] == 2 and lags["billing"]["oldest_seconds"] >= 29
    assert lags["billing"]["error"] is None
    assert lags["gone-db"]["error"].startswith("unreachable: ")
    assert lags["gone-db"]["address"] == f"postgres://app:***@127.0.0.1:{port}/app"
    # the maintainer's lag
    assert found["maintain"]["checked_through"] == newest
    assert found["maintain"]["behind"] == 3 and found["maintain"]["oldest_seconds"] is not None
    assert found["errors"] == {"follow gone-db": lags["gone-db"]["error"]}
    # and the text says the same
    assert "follow    holder-node (since " in text and "maintain  holder-node (since " in text
    assert any(line.split()[:2] == ["gone-node", "gone"] for line in text.splitlines()), text
    assert "billing (" in text and "2 pending, oldest 3" in text
    assert f"gone-db (postgres://app:***@127.0.0.1:{port}/app): unreachable: " in text
    assert "3 events behind" in text
    assert "s3cret" not in text + json.dumps(found)


def test_an_unreachable_rabbitmq_is_the_ingest_part_only(settings, held):
    # Given RabbitMQ out of reach
    settings.AMQP_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    # When the status is asked
    found = json.loads(status("--json", code=1))
    text = status(code=1)
    # Then the ingest part says why, and the rest is there (and the command exits 1)
    assert found["ingest"]["error"].startswith("RabbitMQ unreachable")
    assert found["ingest"]["depth"] is None
    assert set(found["errors"]) == {"ingest"}
    assert found["singletons"] == {"follow": "holder-node", "maintain": "holder-node"}
    assert "ingest queue " in text and ": unknown: RabbitMQ unreachable" in text


def test_an_ingest_queue_not_declared_yet_is_an_answer_not_an_error(settings, held):
    # Given a namespace in which no ingest node has run
    settings.LIFECYCLE_NAMESPACE = f"nowhere-{uuid.uuid4().hex[:8]}"
    # When the status is asked: the queue is said to be missing, and the command exits 0
    found = json.loads(status("--json"))
    assert found["ingest"] == {
        "queue": f"{settings.LIFECYCLE_NAMESPACE}.ingest",
        "depth": 0,
        "consumers": 0,
        "declared": False,
        "error": None,
    }
    assert "ingest" not in found["errors"]
    assert "not declared yet (no ingest node has run)" in status()


def test_the_status_is_for_maintainers_and_their_tokens(anonymous_client, settings, held):
    hostile = "<script>alert(1)</script>"
    now = timezone.now()
    Node.objects.create(name=hostile, roles=["web"], pid=2, started_at=now, seen_at=now)
    _, maintainer_token = tokens.create(f"m-{uuid.uuid4().hex[:6]}", "maintainer")
    _, runner_token = tokens.create(f"r-{uuid.uuid4().hex[:6]}", "runner")

    # Nobody: 401; a viewer, a runner and a runner's token: 403
    refused = anonymous_client.get("/api/status")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert anonymous_client.get("/status").status_code == 302
    for client, headers in (
        (as_role("viewer"), {}),
        (as_role("runner"), {}),
        (Client(), {"HTTP_AUTHORIZATION": f"Bearer {runner_token}"}),
    ):
        answer = client.get("/api/status", **headers)
        assert answer.status_code == 403 and "may not manage" in answer.json()["error"]
        assert client.get("/status", **headers).status_code == 403
    viewer = as_role("viewer")
    assert b'data-testid="status-link"' not in viewer.get("/").content

    # A maintainer and a maintainer's token: the status
    maintainer = as_role("maintainer")
    for client, headers in (
        (maintainer, {}),
        (Client(), {"HTTP_AUTHORIZATION": f"Bearer {maintainer_token}"}),
    ):
        answer = client.get("/api/status", **headers)
        assert answer.status_code == 200, answer.content
        assert answer["Cache-Control"] == "no-store"
        body = answer.json()
        assert body["singletons"] == {"follow": "holder-node", "maintain": "holder-node"}
        assert hostile in [n["name"] for n in body["nodes"]]
    # and the page, linked from the header, every name escaped
    assert b'data-testid="status-link"' in maintainer.get("/").content
    page = maintainer.get("/status")
    assert page.status_code == 200
    html = page.content.decode()
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-testid="holder-follow">holder-node' in html
