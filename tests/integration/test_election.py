"""The roles one node holds at a time (lifecycle/nodes/election.py), against the real server: in
this process, and as real ``lifecycle follow`` processes on two nodes. On a database of
their own: the suite's stack, when it runs, holds the test database's roles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from django.conf import settings

from lifecycle.nodes import election
from lifecycle.runtime.database import conninfo
from lifecycle.runtime.services import maintenance_conninfo
from tests import conftest
from tests.conftest import ROOT, free_port, stack_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def own(postgres, django_db_setup):
    """A migrated inspector database of this module's own: its conninfo. Each test gives
    up the roles it took (its locks end with their connections)."""
    name = f"{settings.DATABASES['default']['NAME']}_election_{uuid.uuid4().hex[:6]}"[:63]
    with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = conftest.test_database_url().rsplit("/", 1)[0] + f"/{name}"
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            check=True,
            timeout=120,
        )
        yield {"conninfo": conninfo(dbname=name), "url": url}
    finally:
        with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [name],
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def lead(role: str, own: dict[str, str], stop: threading.Event | None = None, on_lost=print):
    return election.lead(
        role, stop or threading.Event(), on_lost=on_lost, exit_after=None, database=own["conninfo"]
    )


def _terminate(pid: int) -> None:
    with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_one_node_holds_a_role_and_a_standby_takes_it_when_released(own):
    # Given a node that holds follow
    first = lead("follow", own)
    assert first is not None
    assert election.holders(own["conninfo"])["follow"].node == settings.LIFECYCLE_NODE
    # When another asks for it
    stop, got = threading.Event(), []
    standby = threading.Thread(target=lambda: got.append(lead("follow", own, stop)))
    standby.start()
    # Then it stands by, and maintain is another role, free
    time.sleep(election.RETRY * 2)
    assert got == [] and "maintain" not in election.holders(own["conninfo"])
    # And takes the role once the holder gives it up
    first.release()
    standby.join(election.RETRY * 5)
    assert got and got[0] is not None
    got[0].release()
    stop.set()


def test_a_standby_whose_connection_dies_asks_again(own):
    # Given a holder, and a standby of another node
    first = lead("follow", own)
    assert first is not None
    stop, got = threading.Event(), []
    standby = threading.Thread(target=lambda: got.append(lead("follow", own, stop)))
    standby.start()
    time.sleep(election.RETRY)
    # When the standby's connection is ended (a PostgreSQL restart, a lost network)
    with psycopg.connect(own["conninfo"], autocommit=True) as conn:
        (pid,) = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'lifecycle-follow %%'"
            " AND pid <> %s",
            [first.conn.info.backend_pid],
        ).fetchone()  # type: ignore[misc]
    _terminate(pid)
    # Then it stands by again, and takes the role once the holder gives it up
    time.sleep(election.RETRY * 2)
    assert got == []
    first.release()
    standby.join(election.RETRY * 8)
    assert got and got[0] is not None, "the standby did not take the role"
    got[0].release()
    stop.set()


def test_a_standby_stops_waiting_when_asked(own):
    held = lead("maintain", own)
    assert held is not None
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert lead("maintain", own, stop) is None
    held.release()


def test_the_holder_stops_when_its_lock_connection_dies(own):
    # Given a holder
    lost: list[str] = []
    held = lead("follow", own, on_lost=lost.append)
    assert held is not None
    # When its lock's connection is ended from outside (a PostgreSQL restart does as much)
    _terminate(held.conn.info.backend_pid)
    # Then it is told within a ping, and the role is free for another node
    wait_for(lambda: lost, election.PING * 3, what="the holder to be told")
    assert "connection failed" in lost[0]
    other = lead("follow", own)
    assert other is not None
    other.release()
    held.release()


def test_the_holder_stops_when_its_lock_connection_stops_answering(own):
    # Given a holder whose connection hangs (a lost network: the ping never returns)
    lost: list[str] = []
    held = lead("maintain", own, on_lost=lost.append)
    assert held is not None
    with held.conn.lock:  # the pinger's next query waits here, as on a dead socket
        # Then it stops after LOST_AFTER, before the server would free its lock (5 s)
        wait_for(lambda: lost, election.LOST_AFTER + 2, what="the holder to stop")
    assert "did not answer" in lost[0]
    held.release()


def _follow(node: str, url: str) -> subprocess.Popen[str]:
    env = {
        **stack_env(free_port()),
        "DATABASE_URL": url,
        "LIFECYCLE_NODE": node,
        "LIFECYCLE_PROCESS_ROLE": "follow",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "lifecycle", "follow"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_two_follow_processes_one_works_and_the_other_takes_over_after_kill_9(own):
    nodes = {"node-a": _follow("node-a", own["url"]), "node-b": _follow("node-b", own["url"])}
    try:
        # Given two nodes' followers: exactly one holds the role
        holder = wait_for(
            lambda: election.holders(own["conninfo"]).get("follow"), 30, what="a holder"
        )
        assert holder and holder.node in nodes
        other = next(n for n in nodes if n != holder.node)
        time.sleep(election.RETRY * 2)
        assert election.holders(own["conninfo"])["follow"].node == holder.node
        assert nodes[other].poll() is None  # standing by, not exited
        # When the holder's whole process group is killed
        killed_at = time.monotonic()
        os.killpg(nodes[holder.node].pid, signal.SIGKILL)
        # Then the other node holds it within 10 s
        wait_for(
            lambda: (h := election.holders(own["conninfo"]).get("follow")) and h.node == other,
            10,
            what=f"{other} to take follow over",
            detail=lambda: election.holders(own["conninfo"]),
        )
        print(f"taken over in {time.monotonic() - killed_at:.2f}s")
    finally:
        for process in nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in nodes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    standby_log = nodes[other].stdout.read() if nodes[other].stdout else ""
    assert "standing by on node" in standby_log, standby_log
    assert f"node {other} holds the role" in standby_log, standby_log
