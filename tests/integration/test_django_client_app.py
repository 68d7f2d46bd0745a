"""The client's Django helpers in a real Django project (``django_client_app/``), with psycopg 3
and with psycopg 2, on real PostgreSQL and RabbitMQ.

The project runs in a subprocess (this process already runs the inspector's Django): it
migrates its own database, requests its views through Django's handler and the client's
middleware, and publishes to a RabbitMQ namespace of this test's, whose ingest queue the test
then reads. What lands there is what the inspector would store: each read with the prefixed
key, the status the view returned, the row's xmin, the snapshot, the response's real
``http_status`` and ``cached``; the view's warnings on the same task; the broker step."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest
from psycopg import sql as pgsql

from lifecycle import events
from lifecycle.history import Snapshot
from tests import venvs
from tests.services import require_postgres, require_rabbitmq, skip_or_fail

require_postgres()
require_rabbitmq()

# the psycopg 2 environment, begun when the session starts (asked for by one param of `run`)
pytestmark = [pytest.mark.integration, pytest.mark.environment("psycopg2_python")]

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "django_client_app"
PREFIX = "client-app:"  # its settings' LIFECYCLE_KEY_PREFIX
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture(scope="module")
def psycopg2_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Django project's environment with psycopg 2 and no psycopg 3: Django, the driver and
    the client (``[dramatiq]``, without the ``psycopg`` extra), from PyPI."""
    return venvs.made("psycopg2_python", tmp_path_factory)


@venvs.maker("psycopg2_python")
def make_psycopg2_python(where: Path) -> Path:
    source = where / "client-source"
    shutil.copytree(
        ROOT / "lifecycle" / "client", source, ignore=shutil.ignore_patterns("__pycache__", "build")
    )
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    python = where / "venv" / "bin" / "python"
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "django>=5.2,<6",
            "psycopg2-binary>=2.9",
            f"{source}[dramatiq]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        skip_or_fail(f"could not build a psycopg2 environment from PyPI: {done.stderr[-500:]}")
    return python


@contextlib.contextmanager
def app_database() -> Iterator[str]:
    """The project's own database, on the inspector's server; dropped after."""
    from lifecycle.runtime.database import conninfo

    name = f"django_client_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(conninfo(dbname="postgres"), autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(conninfo(dbname=name))
    user = str(params.get("user") or "")
    auth = f"{user}:{params['password']}" if params.get("password") else user
    host, port = params.get("host") or "127.0.0.1", params.get("port") or 5432
    try:
        yield f"postgres://{auth}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(conninfo(dbname="postgres"), autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


@contextlib.contextmanager
def rabbitmq_namespace() -> Iterator[str]:
    """A RabbitMQ namespace of this test's: the project's events land in its ingest queue."""
    name = f"{os.environ['LIFECYCLE_NAMESPACE']}-django-client-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            channel = conn.channel()
            channel.queue_delete(f"{name}.ingest")
            channel.exchange_delete(f"{name}.events")
        finally:
            conn.close()


def published(namespace: str) -> list[dict[str, Any]]:
    """Every message in the namespace's ingest queue, in the order it was published."""
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    found: list[dict[str, Any]] = []
    try:
        channel = conn.channel()
        while True:
            method, _, body = channel.basic_get(f"{namespace}.ingest", auto_ack=True)
            if method is None:
                return found
            # As the ingestor takes it (one event, or a batch of them): one it would refuse
            # fails here
            for _, judged in events.parse_batch(body):
                if isinstance(judged, events.MalformedEvent):
                    raise judged
            decoded = json.loads(body)
            found.extend(decoded if isinstance(decoded, list) else [decoded])
    finally:
        conn.close()


def exercise(python: Path, database: str, namespace: str, pythonpath: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), "exercise.py"],
        cwd=APP,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": pythonpath,
            "CLIENT_APP_DATABASE_URL": database,
            "AMQP_URL": AMQP_URL,
            "LIFECYCLE_NAMESPACE": namespace,
            "LIFECYCLE_PROCESS_ROLE": "api",
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


Run = tuple[dict[str, Any], list[dict[str, Any]]]


@pytest.fixture(scope="module", params=["psycopg", "psycopg2"])
def run(request: pytest.FixtureRequest) -> Run:
    """The project's exercise with one driver, on a database and a namespace of its own:
    what it printed, and what it published."""
    if request.param == "psycopg":
        # This environment: Django 5.2 with psycopg 3, the client from the checkout
        python, pythonpath = Path(sys.executable), f"{APP}{os.pathsep}{ROOT}"
    else:
        python, pythonpath = request.getfixturevalue("psycopg2_python"), str(APP)
    with app_database() as database, rabbitmq_namespace() as namespace:
        facts = exercise(python, database, namespace, pythonpath)
        messages = published(namespace)
    assert facts["driver"] == request.param
    return facts, messages


def test_each_read_carries_its_version_snapshot_status_and_the_responses_status(
    run: Run,
) -> None:
    facts, messages = run
    key, job_xmin = f"{PREFIX}{facts['job']}", facts["job_xmin"]
    answers = facts["answers"]
    # Given the views' answers: a JSONField came back as a dict, whatever the driver
    assert answers["detail"] == [200, {"id": facts["job"], "status": "PENDING", "kind": "report"}]
    assert answers["family"][1]["parent"] == "DONE"
    assert (answers["missing"], answers["broken"], answers["start"]) == (404, 500, 202)
    # (the status view served its cache after the job moved on: the bug a cached read hides)
    assert answers["status_cached"][1]["status"] == "PENDING"

    everything = [m for m in messages if m["source"] == "api"]
    delivery = [m for m in everything if m["task"] == f"{PREFIX}{facts['delivery']}"]
    # Then every read names its row by its prefixed key
    reads = [m for m in everything if m["task"] == key]
    assert len(reads) + len(delivery) == len(everything)
    # And says what it returned, the version it read, how the request ended and whether
    # the answer came from the cache: detail, family (its join's parent row is not the
    # version), broken (500), status filled, status from the cache, one outside a request
    assert [
        (m["status"], m["body"]["xmin"], m["body"]["http_status"], m["body"]["cached"])
        for m in reads
    ] == [
        ("PENDING", job_xmin, 200, False),
        ("PENDING", job_xmin, 200, False),
        ("PENDING", job_xmin, 500, False),
        ("PENDING", job_xmin, 200, False),
        ("PENDING", job_xmin, 200, True),
        ("RUNNING", facts["version"]["xmin"], 200, False),
    ]
    assert job_xmin != facts["parent_xmin"]
    # And each snapshot saw the version it read; the cached hit carries the filling read's
    for m in reads:
        assert Snapshot.parse(m["body"]["snapshot"]).sees(m["body"]["xmin"])
    assert reads[4]["body"]["snapshot"] == reads[3]["body"]["snapshot"]
    # And the version the caller keeps is the one reported (pickled, as a cache keeps it)
    assert facts["version"] == {
        "xmin": reads[5]["body"]["xmin"],
        "snapshot": reads[5]["body"]["snapshot"],
        "status": "RUNNING",
    }
    assert facts["version"]["xmin"] != job_xmin
    # A model that inherits its status reports its parent table's row version
    inherited = facts["inherited"]
    assert {"xmin": inherited["xmin"], "status": inherited["status"]} == facts["inherited_expected"]
    assert [(m["status"], m["body"]["xmin"]) for m in delivery] == [
        ("SENT", facts["inherited_expected"]["xmin"])
    ]
    assert facts["instance_fields"] == [] and facts["missing_raises"] is True
    assert facts["confirmed"] is True


def test_the_read_goes_through_djangos_cursor_and_router(
    run: Run,
) -> None:
    facts, _ = run
    # The router sends reads to the "reads" alias: the one query is there, in its queries
    ((query,), default) = facts["detail_queries"]["reads"], facts["detail_queries"]["default"]
    assert default == []
    assert '"clientjobs_job".xmin::text::bigint' in query
    assert "pg_current_snapshot()::text" in query


def test_the_views_records_and_broker_steps_join_the_same_task(
    run: Run,
) -> None:
    facts, messages = run
    key, job = f"{PREFIX}{facts['job']}", facts["job"]
    logs = [m for m in messages if m["source"] == "log"]
    # The view's own warnings, and Django's record of the 500, are on the job's timeline
    assert [(m["task"], m["kind"], m["body"]["message"]) for m in logs] == [
        (key, "warning", f"job {job}: the view is about to fail"),
        (key, "error", f"Internal Server Error: /jobs/{job}/broken/"),
        (key, "warning", f"job {job}: started by hand"),
    ]
    # The handler came from LOGGING, named after the process's role
    assert {m["body"]["process_role"] for m in logs} == {"api"}
    # And the message the view sent is an enqueue of the same task
    broker = [(m["task"], m["kind"]) for m in messages if m["source"] == "broker"]
    assert broker == [(key, "enqueue")]
