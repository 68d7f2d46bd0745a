"""The append-only event log: events appended (``append``), a task's history, one event, the
recent tasks and their summaries.

The SQL is in ``sql/store.sql``; rows become ``EventRecord`` through ``EventRecord.from_row``
only. Straight from the cursor: building thousands of model instances costs more than the
query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DataError, connection, transaction

from lifecycle import sql
from lifecycle.events import EventRecord, IncomingEvent
from lifecycle.models import Run
from lifecycle.runtime.database import insert_each, one_line

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
STORE = sql.load("store")
INGEST = sql.load("ingest")


def task_events(task_key: str) -> list[EventRecord]:
    """The task's whole history, in arrival order (event id)."""
    with connection.cursor() as cursor:
        cursor.execute(STORE["task_events"], [task_key])
        return [EventRecord.from_row(row) for row in cursor.fetchall()]


def tasks_events(task_keys: list[str]) -> dict[str, list[EventRecord]]:
    """Several tasks' whole histories, each in arrival order, in one query."""
    histories: dict[str, list[EventRecord]] = {key: [] for key in task_keys}
    with connection.cursor() as cursor:
        cursor.execute(STORE["tasks_events"], [task_keys])
        for row in cursor.fetchall():
            histories[row[3]].append(EventRecord.from_row(row))
    return histories


def events_after(task_key: str, after_id: int, limit: int) -> list[EventRecord]:
    """The task's first ``limit`` events with an id above ``after_id``, in arrival order."""
    with connection.cursor() as cursor:
        cursor.execute(STORE["events_after"], [task_key, after_id, limit])
        return [EventRecord.from_row(row) for row in cursor.fetchall()]


def last_statuses(task_key: str) -> list[EventRecord]:
    """The task's last commit with a status and its last read with one, oldest first:
    what ``StatusTracker`` needs of a history not loaded."""
    with connection.cursor() as cursor:
        cursor.execute(STORE["last_statuses"], {"key": task_key})
        return sorted((EventRecord.from_row(row) for row in cursor.fetchall()), key=lambda r: r.id)


def task_gaps(task_key: str) -> list[EventRecord]:
    with connection.cursor() as cursor:
        cursor.execute(STORE["task_gaps"], [task_key])
        return [EventRecord.from_row(row) for row in cursor.fetchall()]


def event(event_id: int) -> EventRecord | None:
    with connection.cursor() as cursor:
        cursor.execute(STORE["event"], [event_id])
        row = cursor.fetchone()
    return EventRecord.from_row(row) if row else None


def events_by_id(ids: list[int]) -> dict[int, EventRecord]:
    with connection.cursor() as cursor:
        cursor.execute(STORE["events_by_id"], [ids])
        return {row[0]: EventRecord.from_row(row) for row in cursor.fetchall()}


def task_stats(task_keys: list[str] | None) -> dict[str, tuple[int, int]]:
    """Event count and newest id per task (every task when ``task_keys`` is None)."""
    with connection.cursor() as cursor:
        if task_keys is None:
            cursor.execute(STORE["all_task_stats"])
        else:
            cursor.execute(STORE["task_stats"], [task_keys])
        return {key: (count, last) for key, count, last in cursor.fetchall()}


def append(events: list[IncomingEvent]) -> tuple[int, list[tuple[int, str]]]:
    """Store validated events (a known uuid is skipped); returns how many were new, and the
    index and reason of each one the database refused (the others are stored anyway). The
    schema (``events.validate``) refuses what the table cannot hold, so a refusal here is a
    bug: its reason is for a client, in words of ours; the database's own text, which
    quotes our SQL, goes to the log, one line an event."""
    rows = [e.as_row() for e in events]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(INGEST["insert_row"], rows)
            return max(cursor.rowcount, 0), []
    except (DataError, UnicodeError):
        pass  # one bad value (a NUL character, a lone surrogate): each row on its own
    with transaction.atomic(), connection.cursor() as cursor:
        stored, refused = insert_each(
            cursor,
            INGEST["insert_row"],
            rows,
            savepoint=transaction.atomic,
            refused_by=(DataError, UnicodeError),
        )
    for i, exc in refused:
        logger.warning("store: event %s refused by the database: %s", rows[i][0], one_line(exc))
    return stored, [(i, "refused by the database: a value it cannot store") for i, _ in refused]


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


# A task the maintainer checked at more events than this is not counted again for a page:
# its check's count, and the events after it (task_extent). Counting 100,000 events of one
# task took 50 ms of every home page that listed it.
EXACT_COUNT_MAX = 5000


def recent_tasks(page: int = 1, per_page: int = PAGE_SIZE) -> tuple[list[TaskSummary], bool]:
    """Tasks by their latest event, newest first, one page; and whether older ones exist.

    It reads the newest events backwards through the primary key until it has found enough
    tasks, instead of grouping the whole table (1 s at a million events): a task's place in
    the list is its newest event, so tasks found in the newest events come first, exactly.
    When the window holds too few tasks (a few long histories fill the table), the older
    tasks come from the maintainer's checks, once it has checked every event before the
    window (until then the window widens): a task whose newest event is older than the
    window has not moved since its check.
    """
    need = page * per_page + 1  # one more than shown tells whether there is a next page
    window = max(2_000, need * 40)
    with connection.cursor() as cursor:
        while True:
            cursor.execute(STORE["recent_tasks"], [window, need])
            rows = cursor.fetchall()
            found = [(key, last) for key, last, *_ in rows]
            if len(found) >= need or not rows or rows[0][3] < window:
                break  # enough, or the window held the whole table
            oldest = rows[0][4]
            cursor.execute(
                STORE["recent_checked"],
                {"before": oldest, "found": [k for k, _ in found], "limit": need - len(found)},
            )
            older = cursor.fetchall()
            if older or _checked_through(cursor) >= oldest:
                found += older  # the maintainer knows every task before the window
                break
            window *= 8
    rows = found[(page - 1) * per_page : page * per_page]
    return summaries(_with_extent(rows)), len(found) >= need


def _checked_through(cursor: Any) -> int:
    cursor.execute(STORE["checked_through"])
    return int(cursor.fetchone()[0])


def _with_extent(rows: list[tuple[str, int]]) -> list[tuple[str, int, datetime | None, int]]:
    """Add each task's first time and event count."""
    if not rows:
        return []
    # Through the (task_key, id) index, always: when a few long histories fill the table,
    # the planner guesses a key holds a third of it and reads whole partitions instead.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            STORE["task_extent"], {"keys": [key for key, _ in rows], "exact": EXACT_COUNT_MAX}
        )
        extent = {key: (first, count) for key, first, count in cursor.fetchall()}
    return [(key, last, *extent.get(key, (None, 0))) for key, last in rows]


def summaries_of(task_keys: list[str]) -> list[TaskSummary]:
    """Summaries of these tasks, newest activity first."""
    with connection.cursor() as cursor:
        cursor.execute(STORE["tasks_newest_event"], [task_keys])
        rows = cursor.fetchall()
    return summaries(_with_extent(rows))


def task_summary(task_key: str) -> TaskSummary | None:
    with connection.cursor() as cursor:
        cursor.execute(STORE["task_summary"], [task_key])
        rows = cursor.fetchall()
    found = summaries(rows)
    return found[0] if found else None


def summaries(rows: list[tuple[Any, ...]]) -> list[TaskSummary]:
    """``(task_key, newest id, first time, count)`` rows as summaries, in the same order."""
    if not rows:
        return []
    keys = [r[0] for r in rows]
    last = events_by_id([r[1] for r in rows])
    with connection.cursor() as cursor:
        cursor.execute(STORE["last_commit_statuses"], [keys])
        statuses = {key: status for key, status in cursor.fetchall() if status is not None}
    runs = latest_runs(keys)
    result = []
    for key, last_id, first_at, count in rows:
        event = last.get(last_id)
        if event is None:  # pruned since the maintainer's check named it: not listed
            continue
        status = statuses.get(key) or event.status
        result.append(TaskSummary(key, event, first_at, count, status, runs.get(key)))
    return result


def latest_runs(task_keys: list[str]) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for run in Run.objects.filter(task_key__in=task_keys).order_by("id"):
        if run.task_key:
            runs[run.task_key] = run
    return runs


def expected_for(task_key: str) -> str | None:
    """What the task's latest scenario run expects, else the latest test that stated an
    expectation (a ``probe.expect`` event, the pytest plugin's); None: nobody expects."""
    return expected_by_task([task_key]).get(task_key)


def expected_by_task(task_keys: list[str]) -> dict[str, str]:
    """What each task's latest run expects, in one query."""
    runs = (
        Run.objects.filter(task_key__in=task_keys)
        .order_by("task_key", "-id")
        .distinct("task_key")
        .values_list("task_key", "expected")
    )
    found = {key: expected for key, expected in runs if key}
    rest = [k for k in task_keys if k not in found]
    if rest:
        with connection.cursor() as cursor:
            cursor.execute(STORE["expected_stated"], [rest])
            found.update(dict(cursor.fetchall()))
    return found
