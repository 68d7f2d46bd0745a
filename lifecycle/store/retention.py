"""Retention of the event table: weekly partitions made ahead of time, old ones dropped.

``lifecycle_event`` is partitioned by range of ``at`` (migration 0013): one partition an ISO
week, from Monday 00:00 UTC to the next Monday, named ``lifecycle_event_wYYYYMMDD`` after
its Monday, and ``lifecycle_event_default`` for every row no partition covers (a producer's
clock can say anything). ``ensure_partitions`` makes this week's and the coming weeks'
partitions; ``prune`` drops whole weeks, which costs no row-by-row delete, no dead rows and
no vacuum. The granularity is a week: a partition goes once its whole week is older than the
cutoff, so up to one week more than asked for is kept; the default partition's rows older
than the cutoff are deleted row by row, to the cutoff exactly. ``maintain`` does both, as
the setting ``LIFECYCLE_RETENTION`` says; the ``lifecycle maintain`` process calls it every
hour.

Weeks rather than days because reads that name no time (a task's history, an event by its
id, the live feed, the home page) look into every partition: a year of events is 53 weekly
partitions, where it was 366 daily ones (see the README's Partitions and retention).

A pruned task's stored check (``lifecycle_task_check``) goes when none of its events is left.
Runs (``lifecycle_run``) are kept: a row per run is small, and a run's page still says what
it expected and observed after its timeline has gone.

Attaching a partition lets events be written meanwhile; dropping one locks the event table
for a moment. Both wait at most ``LOCK_TIMEOUT`` for their locks, because every open
transaction that wrote an event holds one (a captured writer's among them) and writers that
come after a waiting lock queue behind it: a partition whose lock was not granted is left
for the next pass.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, LiteralString

from django.conf import settings
from django.db import OperationalError, connection, transaction
from psycopg import errors
from psycopg import sql as pgsql

from lifecycle import sql

logger = logging.getLogger(__name__)

RETENTION = sql.load("retention")
PREFIX = "lifecycle_event_w"
DEFAULT_PARTITION = "lifecycle_event_default"
WEEKLY = re.compile(r"lifecycle_event_w(\d{8})")
WEEK = timedelta(weeks=1)
# Partitions made ahead of this week: a pass of `lifecycle maintain` missed for two weeks
# still finds the current week's partition made.
AHEAD_WEEKS = 2
LOCK_TIMEOUT = "2s"
FORGET_BATCH = 10_000

AGE = re.compile(r"\s*(\d{1,9})([mhdw])\s*")
UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
LONGEST_AGE = timedelta(days=100 * 366)


def parse_age(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``: a whole number and a unit, as a timedelta."""
    match = AGE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not an age: give a whole number and a unit, m (minutes), h (hours),"
            " d (days) or w (weeks), such as 30d or 12h"
        )
    age = int(match[1]) * UNITS[match[2]]
    if not age:
        raise ValueError(f"{text!r}: an age must be more than zero")
    if age > LONGEST_AGE:
        raise ValueError(f"{text!r}: an age must be at most 100 years")
    return age


def format_age(age: timedelta) -> str:
    """The largest unit that says ``age`` exactly: ``parse_age``'s spelling."""
    minutes = int(age.total_seconds() // 60)
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def week_of(day: date) -> date:
    """The Monday that starts ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def partition_name(day: date) -> str:
    """The name of the partition of ``day``'s week: ``lifecycle_event_w`` and its Monday."""
    return f"{PREFIX}{week_of(day):%Y%m%d}"


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def ensure_partitions(now: datetime | None = None, ahead_weeks: int = AHEAD_WEEKS) -> list[str]:
    """Create the missing weekly partitions from this week to ``ahead_weeks`` weeks ahead
    (ISO weeks, UTC), and return their names.

    Rows that the default partition holds for such a week move into its new partition in the
    same transaction, so creating it never fails on them. Several callers at once are safe:
    they take turns, and the later ones find the partitions made.
    """
    this_week = week_of(_utc(now).date())
    weeks = [this_week + n * WEEK for n in range(ahead_weeks + 1)]
    with transaction.atomic(), connection.cursor() as cursor:
        _lock(cursor)
        existing = set(_partitions(cursor))
        missing = [week for week in weeks if partition_name(week) not in existing]
        if missing:
            cursor.execute(RETENTION["lock_default"])
        for week in missing:
            names = _names(week)
            _execute(cursor, "create_detached", names)
            _execute(cursor, "move_from_default", names)
            if cursor.rowcount:
                logger.info(
                    "moved %s from %s into %s",
                    _events(cursor.rowcount),
                    DEFAULT_PARTITION,
                    partition_name(week),
                )
            _execute(cursor, "attach", names)
    return [partition_name(week) for week in missing]


@dataclass
class PruneResult:
    """What ``prune`` did (or, in a dry run, would do)."""

    older_than: timedelta
    cutoff: datetime
    dry_run: bool = False
    # Each partition dropped, oldest first, with the number of events it held.
    dropped: dict[str, int] = field(default_factory=dict)
    # Events older than the cutoff deleted from the default partition.
    default_deleted: int = 0
    # Tasks left without events whose stored check was deleted (not counted in a dry run).
    forgotten_tasks: int = 0
    # Tasks that lost some events and kept others: their stored checks are to be redone.
    touched: set[str] = field(default_factory=set)
    # Partitions old enough that were left in place: their lock was not granted in time.
    busy: list[str] = field(default_factory=list)
    # The oldest event's time left after the prune (None: no event left).
    oldest_kept: datetime | None = None

    @property
    def changed(self) -> bool:
        return bool(self.dropped or self.default_deleted or self.forgotten_tasks or self.busy)

    def lines(self) -> list[str]:
        """What the prune command prints, a line for each thing done."""
        would = "would " if self.dry_run else ""
        cutoff = _when(self.cutoff)
        lines = [
            f"{would}{'drop' if would else 'dropped'} {name} ({_events(n)})"
            for name, n in self.dropped.items()
        ]
        if self.default_deleted:
            lines.append(
                f"{would}{'delete' if would else 'deleted'} {_events(self.default_deleted)}"
                f" older than {cutoff} from {DEFAULT_PARTITION}"
            )
        if self.forgotten_tasks:
            lines.append(
                f"forgot the stored findings of {_count(self.forgotten_tasks, 'task')}"
                " that have no event left"
            )
        lines.extend(
            f"left {name} in place: its lock was not granted within {LOCK_TIMEOUT}; run again later"
            for name in self.busy
        )
        if not lines:
            lines.append(f"nothing older than {cutoff} to prune")
        oldest = _when(self.oldest_kept) if self.oldest_kept else "none, the table is empty"
        lines.append(f"oldest event {'that would be ' if would else ''}kept: {oldest}")
        return lines

    def summary(self) -> str:
        """One line, for the maintenance process's log."""
        done = [f"pruned events older than {format_age(self.older_than)}:"]
        parts = []
        if self.dropped:
            parts.append(
                f"dropped {_count(len(self.dropped), 'partition')}"
                f" ({_events(sum(self.dropped.values()))})"
            )
        if self.default_deleted:
            parts.append(f"deleted {_events(self.default_deleted)} from {DEFAULT_PARTITION}")
        if self.forgotten_tasks:
            parts.append(f"forgot {_count(self.forgotten_tasks, 'task')}")
        if self.busy:
            parts.append(f"{_count(len(self.busy), 'partition')} busy, left for the next pass")
        done.append(", ".join(parts) or "nothing to prune")
        return " ".join(done)


def prune(older_than: timedelta, now: datetime | None = None, dry_run: bool = False) -> PruneResult:
    """Drop every weekly partition whose whole week is older than ``now - older_than``, and
    delete the default partition's rows older than that; forget the stored check of each
    task left without events.

    A week's partition goes only once the week has ended before the cutoff, so up to one
    week more than asked for is kept (a cutoff late on a Sunday keeps that whole week, from
    its Monday 00:00); rows older than the cutoff in the default partition are deleted, to
    the cutoff exactly. Each partition goes in a transaction of its own: one whose lock is
    not granted within ``LOCK_TIMEOUT`` is reported in ``busy`` and left for the next time.
    """
    cutoff = _utc(now) - older_than
    result = PruneResult(older_than, cutoff, dry_run=dry_run)
    with connection.cursor() as cursor:
        old = [
            name
            for name, monday in _weekly(_partitions(cursor))
            if day_start(monday) + WEEK <= cutoff
        ]
    tasks: set[str] = set()
    for name in old:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _lock(cursor)
                if name not in _partitions(cursor):
                    continue  # dropped meanwhile
                names = {"partition": pgsql.Identifier(name)}
                _execute(cursor, "count", names)
                (events,) = cursor.fetchone()
                if not dry_run:
                    _execute(cursor, "checked_tasks", names)
                    checked = {key for (key,) in cursor.fetchall()}
                    _execute(cursor, "drop", names)
                    tasks |= checked
            result.dropped[name] = events
        except OperationalError as exc:
            if not _lock_refused(exc):
                raise
            result.busy.append(name)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if dry_run:
                cursor.execute(RETENTION["count_default"], [cutoff])
                (result.default_deleted,) = cursor.fetchone()
            else:
                _lock(cursor)
                cursor.execute(RETENTION["prune_default"], [cutoff])
                result.default_deleted, keys = cursor.fetchone()
                tasks.update(keys)
    except OperationalError as exc:
        if not _lock_refused(exc):
            raise
        result.busy.append(DEFAULT_PARTITION)
    with transaction.atomic(), connection.cursor() as cursor:
        result.forgotten_tasks = _forget(cursor, sorted(tasks))
        result.oldest_kept = _oldest(cursor, cutoff, gone=result.dropped)
    if tasks and not dry_run:
        from lifecycle.models import TaskCheck

        result.touched = set(
            TaskCheck.objects.filter(task_key__in=list(tasks)).values_list("task_key", flat=True)
        )
    return result


def maintain(now: datetime | None = None, touched: set[str] | None = None) -> str | None:
    """One pass of upkeep: this week's and the coming weeks' partitions, then, when
    ``LIFECYCLE_RETENTION`` is set, the prune. A line saying what it did, or None when there
    was nothing to do. ``touched`` receives the tasks that kept some of their events (their
    stored checks are to be redone: the maintainer does)."""
    done = []
    try:
        created = ensure_partitions(now)
    except OperationalError as exc:
        if not _lock_refused(exc):
            raise
        done.append(
            f"the coming weeks' partitions: a lock was not granted within {LOCK_TIMEOUT},"
            " left for the next pass"
        )
    else:
        if created:
            done.append(f"created {_count(len(created), 'partition')} ({', '.join(created)})")
    retention: timedelta | None = settings.LIFECYCLE_RETENTION
    if retention is not None:
        result = prune(retention, now)
        if touched is not None:
            touched |= result.touched
        if result.changed:
            done.append(result.summary())
    return "; ".join(done) or None


def _utc(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now.astimezone(UTC)


def _lock(cursor: Any) -> None:
    cursor.execute(RETENTION["lock"])
    # After the turn is ours: a caller waiting for its turn waits as long as the other takes.
    cursor.execute(RETENTION["lock_timeout"], [LOCK_TIMEOUT])


def _lock_refused(exc: OperationalError) -> bool:
    return isinstance(exc.__cause__, errors.LockNotAvailable)


def _partitions(cursor: Any) -> list[str]:
    cursor.execute(RETENTION["partitions"])
    return [name for (name,) in cursor.fetchall()]


def _weekly(names: Iterable[str]) -> list[tuple[str, date]]:
    """The weekly partitions among these names, oldest first, with their Mondays."""
    weeks = []
    for name in names:
        if match := WEEKLY.fullmatch(name):
            weeks.append((name, datetime.strptime(match[1], "%Y%m%d").date()))
    return sorted(weeks, key=lambda item: item[1])


def _names(week: date) -> dict[str, pgsql.Composable]:
    """The partition of the week that starts on Monday ``week``, and its bounds."""
    return {
        "partition": pgsql.Identifier(partition_name(week)),
        "lower": pgsql.Literal(day_start(week)),
        "upper": pgsql.Literal(day_start(week) + WEEK),
    }


def _execute(cursor: Any, block: str, names: Mapping[str, pgsql.Composable]) -> None:
    query: LiteralString = RETENTION[block]
    # Rendered here, so that Django's cursor gets text whatever its binding.
    cursor.execute(pgsql.SQL(query).format(**names).as_string(cursor.connection))


def _forget(cursor: Any, tasks: list[str]) -> int:
    forgotten = 0
    for start in range(0, len(tasks), FORGET_BATCH):
        cursor.execute(RETENTION["forget_tasks"], [tasks[start : start + FORGET_BATCH]])
        forgotten += cursor.rowcount
    return forgotten


def _oldest(cursor: Any, cutoff: datetime, gone: Iterable[str]) -> datetime | None:
    """The oldest event's time among those kept: the default partition's from the cutoff
    on, and the oldest weekly partition's that is left and holds any (a week's scan)."""
    gone = set(gone)
    cursor.execute(RETENTION["oldest_in_default"], [cutoff])
    found = [cursor.fetchone()[0]]
    for name, _ in _weekly(_partitions(cursor)):
        if name in gone:
            continue
        _execute(cursor, "oldest_in", {"partition": pgsql.Identifier(name)})
        oldest = cursor.fetchone()[0]
        if oldest is not None:
            found.append(oldest)
            break
    times = [t for t in found if t is not None]
    return min(times) if times else None


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _events(n: int) -> str:
    return _count(n, "event")
