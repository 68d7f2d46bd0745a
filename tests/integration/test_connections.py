"""The web process's database work survives its connections being cut (what a PostgreSQL
restart does to them): no connection outlives the call that opened it in a worker thread."""

from __future__ import annotations

import psycopg
import pytest
from django.test import AsyncClient

from lifecycle.people.tokens import create
from lifecycle.runtime.database import conninfo

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def test_backend() -> int:
    """The backend of the test's own connection (its teardown flushes through it)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def cut_every_other_connection(spare: int) -> int:
    """Terminate every backend of the web process's as a restart would, but the test's."""
    with psycopg.connect(conninfo(application_name="cutter"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)"
            " AND application_name LIKE 'lifecycle-%%'",
            [spare],
        ).fetchall()
    return len(rows)


async def test_starting_runs_works_after_the_connections_were_cut(postgres, test_backend):
    from channels.db import database_sync_to_async

    _, token = await database_sync_to_async(create)("conn-test", "runner")
    client = AsyncClient()
    for attempt in range(3):
        # Each start runs its database work in worker threads (the probe's submit goes to
        # this same server), which used to keep their connections, dead after a restart.
        response = await client.post(
            "/api/scenarios/succeeds/runs",
            data=b"{}",
            content_type="application/json",
            headers={"authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, (attempt, response.content[:300])
        await database_sync_to_async(cut_every_other_connection)(test_backend)


def test_the_labs_snapshot_reads_survive_their_connection_being_cut(
    postgres: None, request: pytest.FixtureRequest
) -> None:
    from lifecycle.lab.models import Task
    from lifecycle.lab.reads import read_task, snapshot_reads

    # Given a snapshot_read task whose kept snapshot connection PostgreSQL then ends
    task = Task.objects.create(config={"snapshot_read": True})
    request.addfinalizer(snapshot_reads.close_all)
    assert read_task(str(task.id)).path == "snapshot"
    with psycopg.connect(conninfo(), autocommit=True) as other:
        other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'lab-api-snapshot' AND datname = current_database()"
        )

    # When the API reads the task again, Then it answers, from a new snapshot
    again = read_task(str(task.id))
    assert again is not None and again.path == "snapshot"
    assert again.task["status"] == task.status
