"""A row written inside a savepoint carries the subtransaction's xid as its ``xmin``, which no
captured commit carries (the capture records the top-level transaction). On real PostgreSQL:
a worker writing through Django's nested ``atomic()`` and one writing through SQLAlchemy's
``begin_nested()``; a stale read of each is named, and each read is linked on the timeline to
the commit whose version it returned."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from django.db import transaction
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from lifecycle.check import rules
from lifecycle.client import reads
from lifecycle.events import EventRecord
from lifecycle.history import XID_WRAP
from lifecycle.lab.models import Task
from lifecycle.runtime.database import conninfo
from lifecycle.store import eventlog
from lifecycle.timeline.layout import TimelineBuilder
from tests.published import Published

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


INSERT = (
    "INSERT INTO lifecycle_event (uuid, task_key, source, kind, status, at, txid, body, "
    "received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())"
)


class Base(DeclarativeBase):
    pass


class LabTask(Base):
    """The application's own SQLAlchemy model of the lab's table."""

    __tablename__ = "lab_task"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(16))


class Stored(Published):
    """The read reports, stored as the ingestor would store them (in arrival order)."""

    def publish(self, message: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        super().publish(message)
        with psycopg.connect(conninfo(), autocommit=True) as conn:
            conn.execute(
                INSERT,
                [
                    message["uuid"],
                    message["task"],
                    message["source"],
                    message["kind"],
                    message["status"],
                    message["at"],
                    message["txid"],
                    Jsonb(message["body"]),
                ],
            )


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch, postgres: None) -> Published:
    sink = Stored()
    monkeypatch.setattr(reads, "get_publisher", lambda: sink)
    return sink


def views(key: str) -> tuple[list[EventRecord], dict[int, Any]]:
    events = eventlog.task_events(key)
    return events, {v.record.id: v for v in TimelineBuilder().extend(events)}


def commit_of(events: list[EventRecord], status: str) -> EventRecord:
    return next(e for e in events if e.source == "db" and e.status == status)


def test_django_nested_atomic_writes_and_a_stale_read_of_them(
    published: Published, client: Any
) -> None:
    # Given a lab task the worker moves to RUNNING inside a nested atomic (a savepoint)
    task = Task.objects.create(config={})
    key = str(task.id)
    with transaction.atomic():
        with transaction.atomic():  # Django makes this one a savepoint
            Task.objects.filter(pk=task.pk).update(status="RUNNING")
    # And an API that reads it inside one REPEATABLE READ transaction
    with psycopg.connect(conninfo(application_name="api")) as api:
        api.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reads.read_row(api, "lab_task", key, client="api")
        # When the worker commits COMPLETED the same way, and the API reads again later
        with transaction.atomic():
            with transaction.atomic():
                Task.objects.filter(pk=task.pk).update(status="COMPLETED")
        time.sleep(0.4)
        reads.read_row(api, "lab_task", key, client="api")
    fresh = psycopg.connect(conninfo(application_name="api"))
    with fresh:
        reads.read_row(fresh, "lab_task", key, client="api")

    events, shown = views(key)
    running, completed = commit_of(events, "RUNNING"), commit_of(events, "COMPLETED")
    first, stale, last = (e for e in events if e.source == "api")
    # Then the rows' xmins are the savepoints' xids, which no commit carries
    assert first.body["xmin"] != running.txid % XID_WRAP
    assert last.body["xmin"] != completed.txid % XID_WRAP
    # And the stale read is named, against the commit it missed
    (found,) = rules.check(events)
    assert (found.kind, found.cause) == ("stale_read", "old_snapshot")
    assert found.events == (completed.id, stale.id)
    assert f"the version of transaction {running.txid}" in found.message
    # And every read is linked to the commit whose version it returned
    assert [shown[r.id].version_of for r in (first, stale, last)] == [
        running.id,
        running.id,
        completed.id,
    ]
    # And the page draws those links
    page = client.get(f"/tasks/{key}").content.decode()
    assert (
        f'href="#event-{running.id}" data-testid="version-link">↖ version of txn {running.txid}'
        in page
    )
    assert f"version of txn {completed.txid}" in page


def test_sqlalchemy_begin_nested_writes_and_an_identity_map_read_of_them(
    published: Published, client: Any
) -> None:
    settings = conninfo(application_name="sa-worker")
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(settings))
    task = Task.objects.create(config={})
    key = str(task.id)
    try:
        # Given an API session that read the task while PENDING and keeps it
        api = Session(engine)
        held = reads.read_object(api, LabTask, task.id, client="api")
        api.commit()  # the request ends, but the session (and its object) live on
        held.status  # noqa: B018  (loaded again, then kept by the identity map)
        # When the worker writes RUNNING, then COMPLETED, each inside begin_nested()
        with Session(engine) as worker:
            for status in ("RUNNING", "COMPLETED"):
                with worker.begin():
                    row = worker.get(LabTask, task.id)
                    assert row is not None
                    with worker.begin_nested():
                        row.status = status
        time.sleep(0.3)
        # And the API reads it again through the same session, then through a new one
        stale = reads.read_object(api, LabTask, task.id, client="api")
        with Session(engine) as new:
            reads.read_object(new, LabTask, task.id, client="api")
        api.close()
    finally:
        engine.dispose()

    assert stale.status == "PENDING"  # the identity map's object
    events, shown = views(key)
    pending, completed = commit_of(events, "PENDING"), commit_of(events, "COMPLETED")
    first, cached, last = (e for e in events if e.source == "api")
    assert cached.body["xmin"] is None and last.body["xmin"] != completed.txid % XID_WRAP
    # Then the identity map's object is named by the read's snapshot
    (found,) = rules.check(events)
    assert (found.kind, found.cause) == ("stale_read", "cached_object")
    assert found.events == (completed.id, cached.id)
    assert "identity map" in found.message and f"transaction {completed.txid}" in found.message
    # And the fresh reads are linked to their commits, the savepoint's included
    assert shown[first.id].version_of == pending.id
    assert shown[last.id].version_of == completed.id
    page = client.get(f"/tasks/{key}").content.decode()
    assert f"version of txn {completed.txid}" in page
