"""A long history in parts: its outline, then its events in windows.

A task page of 100,000 events cannot load them all (parsing them alone takes seconds), so a
history longer than ``WINDOWED_ABOVE`` is read in pieces the database answers from its
``(task_key, at, id)`` index:

- the **extent**: how many events, the newest id, the first and last time;
- the **columns**: events per lane in each of ``COLUMNS`` equal slices of time, which give
  the swimlane its dots and the windows their counts;
- every **commit** and every **attempt step**, each with the little of its body the
  outline and the swimlane show;
- **windows**: consecutive columns holding about ``WINDOW`` events, each loaded on demand;
  the first and the last are loaded with the page.

A place in the timeline's order is a ``Cursor``: an event's time in µs since the epoch and
its id; ``(t, 0)`` is the start of time ``t``, before every event at it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from django.db import connection

from lifecycle import sql
from lifecycle.events import GAP, EventRecord
from lifecycle.store import eventlog

OUTLINE = sql.load("outline")
T = TypeVar("T")

WINDOWED_ABOVE = 2000  # a longer history is shown as an outline and windows
WHOLE_MAX = 20_000  # up to this many, a page may still show every event at once (?whole=1)
WINDOW = 500  # events a window holds (about: windows are whole columns), and a load returns
HEAD = 60  # the first events a long page shows
TAIL = 200  # the last events it shows, the live end
COLUMNS = 222  # slices of time; the swimlane's dots are one per lane and slice
MAX_RUN_MEMBERS = 1000  # the events of a folded run one request returns

Cursor = tuple[int, int]  # (time in µs since the epoch, event id)
CURSOR = re.compile(r"^(-?\d{1,20})\.(\d{1,20})$")


def parse_cursor(text: str | None) -> Cursor | None:
    """``<µs>.<id>``, as ``format_cursor`` writes it; None when it is not one."""
    match = CURSOR.match(text or "")
    if match is None:
        return None
    at_us, event_id = int(match.group(1)), int(match.group(2))
    # Times an event may have (1970 to 8999, ``events``) with room; beyond, PostgreSQL's
    # timestamps end.
    if not (-(10**17) < at_us < 3 * 10**17 and event_id < 2**63):
        return None
    return at_us, event_id


def format_cursor(cursor: Cursor) -> str:
    return f"{cursor[0]}.{cursor[1]}"


def cursor_of(record: EventRecord) -> Cursor:
    return (at_us(record.at), record.id)


def at_us(at: datetime | None) -> int:
    return round(at.timestamp() * 1_000_000) if at is not None else 0


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


@dataclass
class Column:
    """One slice of time: its events per lane (attempt steps apart) and its oldest id."""

    index: int
    lanes: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    first_id: int | None = None

    @property
    def count(self) -> int:
        return sum(self.lanes.values()) + self.steps


@dataclass
class Window:
    """Events from ``after`` (excluded; None: the start) to ``before`` (excluded; None: the
    end), about ``count`` of them (events that arrived since the outline was read add)."""

    index: int
    after: Cursor | None
    before: Cursor | None
    count: int
    lanes: dict[str, int]
    first_us: int
    last_us: int


@dataclass
class Outline:
    task_key: str
    count: int
    last_id: int
    first_us: int
    last_us: int
    width_us: float  # a column's width
    columns: list[Column]
    windows: list[Window]
    lanes: dict[str, int]  # the whole history's events per lane (attempt steps included)
    commits: list[Mark]  # every commit
    steps: list[EventRecord]  # every attempt step (start, ack, fail, nack, skip), trimmed
    gaps: list[EventRecord]
    # What pages make of it (its picture, its list of commits), kept with it: the same
    # outline gives the same ones (``derive``).
    derived: dict[object, object] = field(default_factory=dict)

    def derive(self, key: object, make: Callable[[], T]) -> T:
        """``make()``, once per key for this outline (a few keys: the oldest go)."""
        if key not in self.derived:
            if len(self.derived) >= 16:
                self.derived.pop(next(iter(self.derived)))
            self.derived[key] = make()
        return self.derived[key]  # type: ignore[return-value]

    def column_start(self, index: int) -> datetime:
        return from_us(round(self.first_us + index * self.width_us))


def longer_than(task_key: str, n: int) -> bool:
    """Whether the task has more than ``n`` events (reads at most n + 1 of them)."""
    with connection.cursor() as cursor:
        cursor.execute(OUTLINE["longer_than"], {"key": task_key, "n": n})
        return bool(cursor.fetchone()[0])


def span(task_key: str) -> tuple[int, int] | None:
    """The first and last times of a task's events (µs), or None when it has none."""
    with connection.cursor() as cursor:
        cursor.execute(OUTLINE["span"], {"key": task_key})
        first, last = cursor.fetchone()
    return None if first is None else (first, last)


def _records(block: str, params: Mapping[str, Any]) -> list[EventRecord]:
    with connection.cursor() as cursor:
        cursor.execute(OUTLINE[block], params)
        return [EventRecord.from_row(row) for row in cursor.fetchall()]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Mark(NamedTuple):
    """A commit, attempt step or gap as the ``marks`` block selects it: cheap to hold by
    the ten thousand; ``record()`` makes the event of it the timeline's code takes."""

    id: int
    source: str
    kind: str
    status: str | None
    at_us: int
    txid: int | None
    a: str | None  # a commit's old status; a step's message id
    b: str | None  # a commit's new status; a step's attempt
    c: str | None  # a commit's changed columns (JSON); a step's actor
    writer: str | None
    table: str | None
    committed_at: str | None

    @property
    def changes_status(self) -> bool:
        return self.source == "db" and (self.kind != "update" or self.a != self.b)

    @property
    def cursor(self) -> Cursor:
        return (self.at_us, self.id)

    @property
    def changed(self) -> list[Any]:
        """A commit's changed columns."""
        try:
            columns = json.loads(self.c) if self.c else []
        except ValueError:
            return []
        return columns if isinstance(columns, list) else []

    def record(self, task_key: str) -> EventRecord:
        if self.source == "db":
            body: dict[str, Any] = {
                "old_status": self.a,
                "new_status": self.b,
                "changed": self.changed,
                "application_name": self.writer,
                "table": self.table,
            }
            if self.committed_at:
                body["committed_at"] = self.committed_at
        elif self.source == "broker":
            attempt = int(self.b) if self.b and self.b.isascii() and self.b.isdigit() else self.b
            body = {"message_id": self.a, "attempt": attempt, "actor": self.c}
        else:
            body = {}
        return EventRecord(
            self.id,
            self.source,
            self.kind,
            task_key,
            self.status,
            at=EPOCH + timedelta(microseconds=self.at_us),
            txid=self.txid,
            body=body,
        )


# The last outlines read, by task and newest event id: a history is append-only, so the
# same newest id gives the same outline, and a finished task's page opened again (or by a
# colleague following its permalink) skips the two scans. An event that commits after a
# newer one of its task (a lower id, late) shows in the outline with the next event; its
# window shows it at once.
_OUTLINES: OrderedDict[str, tuple[int, Outline]] = OrderedDict()
OUTLINES_KEPT = 8
_outlines_lock = threading.Lock()


def read_outline(task_key: str) -> Outline | None:
    """The outline of a task's history (None: it has no event)."""
    with connection.cursor() as cursor:
        cursor.execute(OUTLINE["newest"], {"key": task_key})
        newest = cursor.fetchone()[0]
    if newest is None:
        return None
    with _outlines_lock:
        kept = _OUTLINES.get(task_key)
        if kept is not None and kept[0] == newest:
            _OUTLINES.move_to_end(task_key)
            return kept[1]
    found = _read_outline(task_key)
    if found is not None:
        with _outlines_lock:
            _OUTLINES[task_key] = (newest, found)
            _OUTLINES.move_to_end(task_key)
            while len(_OUTLINES) > OUTLINES_KEPT:
                _OUTLINES.popitem(last=False)
    return found


def _read_outline(task_key: str) -> Outline | None:
    found = span(task_key)
    if found is None:
        return None
    first, last = found
    width = max((last - first) / COLUMNS, 1.0)
    bounds = [EPOCH + timedelta(microseconds=round(first + i * width)) for i in range(1, COLUMNS)]
    columns = [Column(i) for i in range(COLUMNS)]
    count = last_id = 0
    with connection.cursor() as cursor:
        cursor.execute(OUTLINE["columns"], {"key": task_key, "bounds": bounds})
        for source, index, step, n, first_id, newest in cursor.fetchall():
            column = columns[max(0, min(index, COLUMNS - 1))]
            if step:
                column.steps += n
            else:
                column.lanes[source] = column.lanes.get(source, 0) + n
            if column.first_id is None or first_id < column.first_id:
                column.first_id = first_id
            count += n
            last_id = max(last_id, newest)
        cursor.execute(OUTLINE["marks"], {"key": task_key})
        marks = [Mark._make(row) for row in cursor.fetchall()]
    lanes: dict[str, int] = {}
    for column in columns:
        for source, n in column.lanes.items():
            lanes[source] = lanes.get(source, 0) + n
    steps = sum(c.steps for c in columns)
    if steps:
        lanes["broker"] = lanes.get("broker", 0) + steps
    gap_ids = [r.id for r in marks if r.kind == GAP]
    gaps = eventlog.events_by_id(gap_ids) if gap_ids else {}
    return Outline(
        task_key=task_key,
        count=count,
        last_id=last_id,
        first_us=first,
        last_us=last,
        width_us=width,
        columns=columns,
        windows=windows_of(columns, first, width),
        lanes=lanes,
        commits=[m for m in marks if m.source == "db"],
        steps=[m.record(task_key) for m in marks if m.source == "broker"],
        gaps=sorted(gaps.values(), key=lambda r: (r.at or EPOCH, r.id)),
    )


def windows_of(columns: Sequence[Column], first_us: int, width_us: float) -> list[Window]:
    """Consecutive columns merged until each window holds at least ``WINDOW`` events (the
    last one takes what is left); a window's bounds are its columns' start times."""
    windows: list[Window] = []
    start: int | None = None
    count = 0
    lanes: dict[str, int] = {}

    def boundary(index: int) -> Cursor:
        return (round(first_us + index * width_us), 0)

    for column in columns:
        if not column.count:
            continue
        if start is None:
            start = column.index
        count += column.count
        for source, n in column.lanes.items():
            lanes[source] = lanes.get(source, 0) + n
        if column.steps:
            lanes["broker"] = lanes.get("broker", 0) + column.steps
        if count >= WINDOW:
            windows.append(
                Window(
                    len(windows),
                    windows[-1].before if windows else None,
                    boundary(column.index + 1),
                    count,
                    lanes,
                    boundary(start)[0],
                    boundary(column.index + 1)[0],
                )
            )
            start, count, lanes = None, 0, {}
    if start is not None:
        windows.append(
            Window(
                len(windows),
                windows[-1].before if windows else None,
                None,
                count,
                lanes,
                boundary(start)[0],
                boundary(len(columns))[0],
            )
        )
    elif windows:
        windows[-1].before = None  # the last window is open: later events join it
    return windows


def window_events(
    task_key: str,
    after: Cursor | None,
    before: Cursor | None,
    limit: int = WINDOW,
    *,
    newest: bool = False,
) -> list[EventRecord]:
    """Up to ``limit`` events between two places, in time order (``newest``: the last
    ``limit`` of them, else the first)."""
    records = _records(
        "window_end" if newest else "window",
        {
            "key": task_key,
            "after_us": after[0] if after else None,
            "after_id": after[1] if after else 0,
            "before_us": before[0] if before else None,
            "before_id": before[1] if before else 0,
            "limit": limit,
        },
    )
    return records[::-1] if newest else records


def count_between(task_key: str, after: Cursor | None, before: Cursor | None) -> int:
    """How many events lie between two places (excluded; None: open)."""
    with connection.cursor() as cursor:
        cursor.execute(
            OUTLINE["count_between"],
            {
                "key": task_key,
                "after_us": after[0] if after else None,
                "after_id": after[1] if after else 0,
                "before_us": before[0] if before else None,
                "before_id": before[1] if before else 0,
            },
        )
        return int(cursor.fetchone()[0])


def commits_of_versions(task_key: str, versions: set[int]) -> list[EventRecord]:
    """The commits that wrote these row versions (32-bit ``xmin``), in time order."""
    if not versions:
        return []
    return _records("commits_of_versions", {"key": task_key, "versions": sorted(versions)})


def run_members(
    task_key: str, source: str, after: Cursor, until: Cursor, limit: int = MAX_RUN_MEMBERS
) -> list[EventRecord]:
    """Reads of ``source`` after ``after`` up to ``until`` (included), in time order."""
    return _records(
        "run_members",
        {
            "key": task_key,
            "source": source,
            "after_us": after[0],
            "after_id": after[1],
            "until_us": until[0],
            "until_id": until[1],
            "limit": limit,
        },
    )


def commits_between(task_key: str, after: Cursor, until: Cursor, limit: int) -> list[Mark]:
    """Commits after ``after`` up to ``until`` (included), in time order."""
    with connection.cursor() as cursor:
        cursor.execute(
            OUTLINE["commits_between"],
            {
                "key": task_key,
                "after_us": after[0],
                "after_id": after[1],
                "until_us": until[0],
                "until_id": until[1],
                "limit": limit,
            },
        )
        return [Mark._make(row) for row in cursor.fetchall()]
