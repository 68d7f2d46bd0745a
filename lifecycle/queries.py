"""Reads the dashboard makes: a task's history, the recent tasks, runs by task."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from lifecycle.events import EventRecord
from lifecycle.models import Event, Run

PAGE_SIZE = 25
ZERO = timedelta(0)


# body as text: parsing it with json.loads is several times faster than the jsonb loader;
# times as text for datetime.fromisoformat (C), about 20 times faster than the timestamptz
# loader; the uuid as text, not a UUID object made only to be turned into a string.
EVENT_COLUMNS = (
    "id, source, kind, task_key, status, at::text, received_at::text, txid, body::text, uuid::text"
)


def task_events(task_key: str) -> list[EventRecord]:
    """The task's whole history, in arrival order (event id).

    Straight from the cursor: building 5,000 model instances costs more than the query.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {EVENT_COLUMNS} FROM lifecycle_event WHERE task_key = %s ORDER BY id",
            [task_key],
        )
        return [_record(row) for row in cursor.fetchall()]


def event(event_id: int) -> EventRecord | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {EVENT_COLUMNS} FROM lifecycle_event WHERE id = %s", [event_id])
        row = cursor.fetchone()
    return _record(row) if row else None


def _record(row: tuple) -> EventRecord:
    body = json.loads(row[8]) if row[8] else {}
    return EventRecord(
        id=row[0],
        source=row[1],
        kind=row[2],
        task_key=row[3],
        status=row[4],
        at=_time(row[5]),
        received_at=_time(row[6]),
        txid=row[7],
        body=body or {},
        uuid=row[9],
    )


def _time(text: str | None) -> datetime | None:
    """A timestamptz's text, in UTC like the loader Django sets up gives it."""
    if text is None:
        return None
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is UTC or at.utcoffset() == ZERO else at.astimezone(UTC)


@dataclass
class TaskSummary:
    task_key: str
    last_event: EventRecord
    first_at: datetime | None
    events: int
    status: str | None
    run: Run | None = None
    findings: list[str] = field(default_factory=list)

    @property
    def status_class(self) -> str:
        return (self.status or "none").lower()


def recent_tasks(page: int = 1, per_page: int = PAGE_SIZE) -> tuple[list[TaskSummary], bool]:
    """Tasks by their latest event, newest first, one page; and whether older ones exist.

    It reads the newest events backwards through the primary key until it has found enough
    tasks, instead of grouping the whole table (1 s at a million events): a task's place in
    the list is its newest event, so tasks found in the newest events come first, exactly.
    """
    need = page * per_page + 1  # one more than shown tells whether there is a next page
    window = max(2_000, need * 40)
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                """
                SELECT task_key, max(id), count(*) OVER () AS read
                  FROM (SELECT task_key, id FROM lifecycle_event ORDER BY id DESC LIMIT %s) w
                 GROUP BY task_key
                 ORDER BY max(id) DESC
                 LIMIT %s
                """,
                [window, need],
            )
            found = cursor.fetchall()
            if len(found) >= need or not _more_than(cursor, window):
                break
            window *= 8
    rows = [(key, last) for key, last, _ in found[(page - 1) * per_page : page * per_page]]
    return summaries(_with_extent(rows)), len(found) >= need


def _more_than(cursor: Any, n: int) -> bool:
    cursor.execute("SELECT EXISTS (SELECT 1 FROM lifecycle_event ORDER BY id DESC OFFSET %s)", [n])
    return bool(cursor.fetchone()[0])


def _with_extent(rows: list[tuple[str, int]]) -> list[tuple[str, int, datetime | None, int]]:
    """Add each task's first time and event count (through the (task_key, id) index)."""
    if not rows:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT task_key, min(at), count(*) FROM lifecycle_event "
            "WHERE task_key = ANY(%s) GROUP BY task_key",
            [[key for key, _ in rows]],
        )
        extent = {key: (first, count) for key, first, count in cursor.fetchall()}
    return [(key, last, *extent.get(key, (None, 0))) for key, last in rows]


def tasks_with_findings(
    kind: str | None, page: int = 1, per_page: int = PAGE_SIZE
) -> tuple[list[TaskSummary], bool]:
    """Tasks whose history has a finding (of ``kind``, if given), newest activity first."""
    from lifecycle import checks
    from lifecycle.models import TaskCheck

    checks.refresh_changed()  # every task whose history moved since the last pass
    matching = TaskCheck.objects.exclude(kinds=[])
    if kind:
        matching = matching.filter(kinds__contains=[kind])
    offset = (page - 1) * per_page
    keys = list(
        matching.order_by("-last_event_id").values_list("task_key", flat=True)[
            offset : offset + per_page + 1
        ]
    )
    has_next = len(keys) > per_page
    keys = keys[:per_page]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT task_key, max(id) FROM lifecycle_event "
            "WHERE task_key = ANY(%s) GROUP BY task_key ORDER BY max(id) DESC",
            [keys],
        )
        rows = cursor.fetchall()
    return summaries(_with_extent(rows)), has_next


def task_summary(task_key: str) -> TaskSummary | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT task_key, max(id), min(at), count(*) FROM lifecycle_event "
            "WHERE task_key = %s GROUP BY task_key",
            [task_key],
        )
        rows = cursor.fetchall()
    found = summaries(rows)
    return found[0] if found else None


def summaries(rows: list[tuple]) -> list[TaskSummary]:
    if not rows:
        return []
    keys = [r[0] for r in rows]
    last = {
        e.id: EventRecord.from_model(e) for e in Event.objects.filter(id__in=[r[1] for r in rows])
    }
    statuses = dict(
        Event.objects.filter(task_key__in=keys, source="db")
        .order_by("task_key", "-id")
        .distinct("task_key")
        .values_list("task_key", "status")
    )
    runs = latest_runs(keys)
    result = []
    for key, last_id, first_at, count in rows:
        event = last[last_id]
        status = statuses.get(key) or event.status
        result.append(TaskSummary(key, event, first_at, count, status, runs.get(key)))
    return result


def latest_runs(task_keys: list[str]) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for run in Run.objects.filter(task_key__in=task_keys).order_by("id"):
        runs[run.task_key] = run  # type: ignore[index]
    return runs
