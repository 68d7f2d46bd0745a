"""Findings per task: the checker run over stored histories, memoised, and kept in
``lifecycle_task_check`` so the home page can filter tasks by them.

Who writes ``lifecycle_task_check``: the maintainer process (``lifecycle maintain``, see
``lifecycle.check.maintainer``), which follows the event table and rechecks every task whose
events moved, each at most as often as its history's cost allows. Page views and
websockets only read it; where a stored check is missing or behind, a page checks a short
history itself (memoised, never written) and shows nothing for a long one until the
maintainer gets there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction

from lifecycle import sql
from lifecycle.check.rules import Finding, check
from lifecycle.events import EventRecord
from lifecycle.history import current_status, in_time_order
from lifecycle.models import CheckCursor, Event, TaskCheck
from lifecycle.runtime.database import first_line
from lifecycle.store import eventlog

logger = logging.getLogger(__name__)
FINDINGS = sql.load("findings")

# The checker's last answers, by the exact set of events it was given: a history is
# append-only and an event never changes, so the same ids and expectation give the same
# findings. Several connections to one task, and a page rendered again, check once.
_MEMO: OrderedDict[tuple[object, ...], tuple[frozenset[int], list[Finding]]] = OrderedDict()
MEMO_SIZE = 32
_memo_lock = threading.Lock()


def findings_for(records: Sequence[EventRecord], expected: str | None) -> list[Finding]:
    ids = frozenset(r.id for r in records)
    key = (records[0].task_key, expected, len(ids), max(ids), sum(ids)) if records else None
    if key is not None:
        with _memo_lock:
            hit = _MEMO.get(key)
            if hit is not None and hit[0] == ids and len(ids) == len(records):
                _MEMO.move_to_end(key)
                return list(hit[1])
    findings = check(records, expected)
    if key is None:
        return findings
    with _memo_lock:
        _MEMO[key] = (ids, findings)
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)
    return list(findings)


def stored_findings(
    task_key: str, records: Sequence[EventRecord], expected: str | None
) -> list[Finding]:
    """``findings_for`` a task's whole history, reusing its ``TaskCheck`` when it covers
    exactly these events (as many, up to the same newest id, the same expectation): the
    maintainer keeps it so, and a page then need not run the checker. Nothing is written."""
    row = None
    if len(records) >= STORE_MIN:
        last = max(r.id for r in records)
        row = (
            TaskCheck.objects.filter(
                task_key=task_key, event_count=len(records), last_event_id=last, expected=expected
            )
            .values_list("findings", flat=True)
            .first()
        )
    if row is not None:
        return [Finding.from_json(f) for f in row]
    return findings_for(records, expected)


def _kept_row(
    task_key: str, records: Sequence[EventRecord], task: _Task, findings: list[Finding]
) -> tuple[Any, ...]:
    """A task's check as ``findings.sql``'s keep stores it, with what the home page's
    search filters on: the events it covers, its current status, its first and last
    times, the latest run's scenario and verdict."""
    times = [r.at for r in records if r.at is not None]
    return (
        task_key,
        len(records),
        max((r.id for r in records), default=0),
        task.expected,
        sorted({f.kind for f in findings}),
        json.dumps([f.as_json() for f in findings]),
        current_status(in_time_order(records)) if records else None,
        min(times) if times else None,
        max(times) if times else None,
        task.scenario if task.has_run else None,
        task.verdict,
    )


def _keep(rows: list[tuple[Any, ...]]) -> None:
    """Store tasks' checks in one statement. Without waiting for the disk: a check lost in
    a crash is made again (the maintainer's cursor, committed after it, is lost with it).

    A check the table refuses is skipped with a logged line, and the others stored one by
    one: one bad row must never stop the maintainer (it would fail on it at every pass). A
    lost connection is raised, for the pass to be done again."""
    if not rows:
        return
    try:
        _keep_rows(rows)
    except DatabaseError as exc:
        if isinstance(exc, OperationalError | InterfaceError):
            raise
        if len(rows) == 1:
            logger.warning(
                "maintain: cannot store the check of task %r (%s); skipped until it moves",
                str(rows[0][0])[:200],
                first_line(exc),
            )
            return
        for row in rows:
            _keep([row])


def _keep_rows(rows: list[tuple[Any, ...]]) -> None:
    columns = [list(column) for column in zip(*rows, strict=True)]
    columns[4] = [json.dumps(kinds) for kinds in columns[4]]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(FINDINGS["keep"], columns)


FAILED_CHECK_PAUSE = (
    60.0  # seconds of "cost" a failed check counts for, so it is not retried at once
)
STORE_MIN = 1000  # shorter histories check faster than the row is read


# Ids that commit out of order may land this far below the newest id already passed.
REFRESH_MARGIN = 10_000


def first_pass_done() -> bool:
    """Whether the maintainer has checked every task once (the home page says if not)."""
    return CheckCursor.objects.filter(pk=1, checked_through__gt=0).exists()


def changed_tasks() -> tuple[set[str] | None, int]:
    """The tasks whose events moved since the last pass (None: every task, the first time),
    and the newest event id now; the pass ends with ``passed(newest)``.

    The position is kept in lifecycle_check_cursor; a pass reads only the newer part of
    the event table (by primary key), not all of it.
    """
    cursor_row, _ = CheckCursor.objects.get_or_create(pk=1)
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    if cursor_row.checked_through == 0:
        return None, newest
    since = max(0, cursor_row.checked_through - REFRESH_MARGIN)
    keys = set(Event.objects.filter(id__gt=since).values_list("task_key", flat=True).distinct())
    return keys, newest


def passed(newest: int) -> None:
    CheckCursor.objects.filter(pk=1).update(checked_through=max(newest, 1))


# Events read in one query when rechecking several tasks (a longer history is read alone),
# and tasks: the histories are held in memory meanwhile.
MAX_READ_EVENTS = 20_000
MAX_READ_TASKS = 500


def refresh(task_keys: Iterable[str] | None = None, *, timings: bool = False) -> dict[str, Any]:
    """Bring the stored findings of these tasks (or of all) up to date; return them (with
    ``timings``: the seconds each recheck took, for the tasks rechecked only).

    The tasks are rechecked by the hundred: what they need read in two queries (their
    histories, and the rest), their checks stored in one statement. A few queries and a
    commit per task made a recheck of a short history cost about 4 ms, when the checker
    itself takes a fiftieth of that."""
    if task_keys is None:
        keys = list(eventlog.task_stats(None))
    else:
        keys = list(dict.fromkeys(task_keys))
    with connection.cursor() as cursor:
        cursor.execute(FINDINGS["tasks"], [keys])
        tasks = {row[0]: _Task(*row[1:]) for row in cursor.fetchall()}
    due = [key for key, task in tasks.items() if not task.current]
    stats = {key: (task.count, task.last) for key, task in tasks.items()}
    took: dict[str, float] = {}
    for chunk in _by_size(due, stats):
        started = time.perf_counter()
        histories = eventlog.tasks_events(chunk)
        rows, timed = [], {}
        for key in chunk:
            begun = time.perf_counter()
            records, task = histories[key], tasks[key]
            try:
                found = check(records, task.expected)
            except Exception:  # a history the checker cannot read must not stop the others
                logger.exception("checking task %r failed; it is retried when it moves", key)
                took[key] = FAILED_CHECK_PAUSE
                continue
            rows.append(_kept_row(key, records, task, found))
            timed[key] = time.perf_counter() - begun
        _keep(rows)
        # Each its own checking time, and a share of the chunk's reading and storing.
        shared = (time.perf_counter() - started - sum(timed.values())) / max(len(chunk), 1)
        took.update({key: seconds + shared for key, seconds in timed.items()})
    if timings:
        return took
    return {c.task_key: c for c in TaskCheck.objects.filter(task_key__in=list(tasks))}


@dataclass
class _Task:
    """A task as a recheck sees it (findings.sql: tasks)."""

    count: int
    last: int
    checked_count: int | None
    checked_last: int | None
    checked_expected: str | None
    checked_verdict: str | None
    has_run: bool
    run_expected: str | None
    scenario: str | None
    run_verdict: str | None
    stated: str | None

    @property
    def expected(self) -> str | None:
        """What the latest run expects, else the latest test that stated an expectation
        (as eventlog.expected_by_task)."""
        return self.run_expected if self.has_run else self.stated

    @property
    def verdict(self) -> str | None:
        return self.run_verdict if self.has_run else None

    @property
    def current(self) -> bool:
        """Whether the stored check covers these events, this expectation and verdict."""
        return (
            self.checked_count,
            self.checked_last,
            self.checked_expected,
            self.checked_verdict,
        ) == (self.count, self.last, self.expected, self.verdict)


def _by_size(keys: list[str], stats: dict[str, tuple[int, int]]) -> Iterator[list[str]]:
    """The tasks in chunks of at most MAX_READ_EVENTS events (a longer history alone) and
    MAX_READ_TASKS tasks."""
    chunk: list[str] = []
    events = 0
    for key in keys:
        count = stats[key][0]
        if chunk and (events + count > MAX_READ_EVENTS or len(chunk) >= MAX_READ_TASKS):
            yield chunk
            chunk, events = [], 0
        chunk.append(key)
        events += count
    if chunk:
        yield chunk


def findings_json(task_key: str) -> list[dict]:
    """A task's findings as JSON: its stored check if current, else checked now (unkept)."""
    return [
        f.as_json()
        for f in stored_findings(
            task_key, eventlog.task_events(task_key), eventlog.expected_for(task_key)
        )
    ]


# A listed task whose stored check is missing or behind is checked by the page itself only
# when its history is at most this long (a few ms); a longer one waits for the maintainer.
PAGE_CHECK_MAX = 500


def with_findings(summaries: list[eventlog.TaskSummary]) -> list[eventlog.TaskSummary]:
    """Set each summary's finding kinds from the stored checks (read, never written)."""
    keys = [s.task_key for s in summaries]
    stored = {c.task_key: c for c in TaskCheck.objects.filter(task_key__in=keys)}
    expectations = eventlog.expected_by_task(keys) if keys else {}
    behind = []
    for summary in summaries:
        row = stored.get(summary.task_key)
        expected = expectations.get(summary.task_key)
        current = (
            row is not None
            and row.event_count == summary.events
            and row.last_event_id == summary.last_event.id
            and row.expected == expected
        )
        if current or summary.events > PAGE_CHECK_MAX:
            summary.findings = list(row.kinds) if row is not None else []
        else:
            behind.append(summary)
    # Read in one query: on a busy system every task in the list is moving, and a query per
    # task made most of the home page's time.
    histories = eventlog.tasks_events([s.task_key for s in behind]) if behind else {}
    for summary in behind:
        found = findings_for(
            histories.get(summary.task_key, []), expectations.get(summary.task_key)
        )
        summary.findings = sorted({f.kind for f in found})
    return summaries


def stored_check(
    task_key: str, count: int, last_id: int, expected: str | None
) -> tuple[list[Finding], int] | None:
    """A long history's findings as the maintainer last stored them, without reading the
    history: the findings and how many events they are behind (0: current). None: never
    checked with this expectation."""
    row = (
        TaskCheck.objects.filter(task_key=task_key, expected=expected)
        .values_list("findings", "event_count", "last_event_id")
        .first()
    )
    if row is None:
        return None
    stored, checked_count, checked_last = row
    current = (checked_count, checked_last) == (count, last_id)
    behind = 0 if current else max(count - checked_count, 1)
    return [Finding.from_json(f) for f in stored], behind


def latest_stored(task_key: str, expected: str | None) -> list[Finding]:
    """The findings the maintainer last stored for a task (none: never checked)."""
    row = (
        TaskCheck.objects.filter(task_key=task_key, expected=expected)
        .values_list("findings", flat=True)
        .first()
    )
    return [Finding.from_json(f) for f in row] if row is not None else []
