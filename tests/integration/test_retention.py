"""The partitioned event table on real PostgreSQL: a partition is an ISO week (Monday
00:00 UTC to the next Monday), pruning drops whole weeks, the default partition catches any
clock and gives its rows up to a new week's partition, a redelivered event is still stored
once, and migration 0013 carries an existing table's rows over."""

from __future__ import annotations

import io
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from importlib import import_module
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from lifecycle.check import findings
from lifecycle.events import IncomingEvent
from lifecycle.ingest import database_conninfo
from lifecycle.models import Event, TaskCheck
from lifecycle.store import eventlog, retention
from lifecycle.store.retention import day_start, partition_name, week_of
from tests.services import require_postgres

require_postgres()

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

INGEST = eventlog.INGEST
# Midday, so that the hours around each synthetic event stay in its day.
NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
TODAY = NOW.date()
MONDAY = week_of(TODAY)  # this week's: the tests count in weeks from it, whatever today is
WEEK = timedelta(weeks=1)


def monday(weeks: int) -> date:
    """The Monday ``weeks`` weeks from this week's (negative: ago)."""
    return MONDAY + weeks * WEEK


def event(task: str, at: datetime, kind: str = "read", status: str = "RUNNING") -> IncomingEvent:
    return IncomingEvent(str(uuid.uuid4()), task, "api", kind, status, at, None, {"n": 1})


def partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits"
            " WHERE inhparent = 'lifecycle_event'::regclass"
        )
        return {name for (name,) in cursor.fetchall()}


def partition_of(event_uuid: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM lifecycle_event WHERE uuid = %s", [event_uuid]
        )
        return cursor.fetchone()[0]


def copy_in(events: list[IncomingEvent]) -> int:
    """Store events the ingestor's way: COPY into its staging table, one INSERT from there."""
    with connection.cursor() as cursor:
        cursor.execute(INGEST["create_staging"])
        with cursor.cursor.copy(INGEST["copy_staging"]) as copy:
            for n, e in enumerate(events):
                copy.write_row((n, *e.as_row()))
        cursor.execute(INGEST["insert_from_staging"])
        return cursor.rowcount


@pytest.fixture
def month() -> dict[str, Any]:
    """Six whole weeks of events (this one and the 5 before it, 100 a day, 4,200 in all), an
    empty week's partition before them, and three events in the default partition, each
    task with its stored check.

    ``steady`` has events every day; ``week-0`` .. ``week-5`` each have a week's (this
    week's, last week's, ...); ``ancient`` has two events 9 and 10 weeks ago, which no
    partition covers; ``clockless`` one 400 days ahead.
    """
    retention.ensure_partitions(now=day_start(monday(-6)), ahead_weeks=6)
    events = []
    for weeks_ago in range(6):
        for weekday in range(7):
            noon = day_start(monday(-weeks_ago) + timedelta(days=weekday)) + timedelta(hours=12)
            for i in range(100):
                at = noon + timedelta(minutes=7 * i - 350)  # 06:10 to 17:43
                task = "steady" if i % 5 == 0 else f"week-{weeks_ago}"
                events.append(event(task, at, status="COMPLETED" if i == 99 else "RUNNING"))
    outside = [
        event("ancient", NOW - 10 * WEEK),
        event("ancient", NOW - 9 * WEEK),
        event("clockless", NOW + timedelta(days=400)),
    ]
    assert eventlog.append(events + outside) == (4203, [])
    findings.refresh()
    assert set(TaskCheck.objects.values_list("task_key", flat=True)) == {
        "steady",
        "ancient",
        "clockless",
        *(f"week-{n}" for n in range(6)),
    }
    return {"events": events, "outside": outside}


def test_a_month_of_events_pruned_to_two_weeks_drops_the_old_weeks(
    month: dict[str, Any],
) -> None:
    # Given six weeks of events in weekly partitions, and old ones in the default partition
    events: list[IncomingEvent] = month["events"]
    # The cutoff (14 days before today's noon) falls in the week that began 2 Mondays ago:
    # that week is kept whole, so up to a week more than asked for is kept.
    kept_from = day_start(monday(-2))
    newer = sorted(e.uuid for e in events if e.at >= kept_from)
    assert {partition_of(e.uuid) for e in month["outside"]} == {retention.DEFAULT_PARTITION}
    assert partition_of(events[0].uuid) == partition_name(MONDAY)

    # When events older than 14 days are pruned
    result = retention.prune(timedelta(days=14), now=NOW)

    # Then every partition of a week that ended before the cutoff is gone, and no other
    assert result.cutoff == NOW - timedelta(days=14)
    assert list(result.dropped) == [partition_name(monday(n)) for n in (-6, -5, -4, -3)]
    assert list(result.dropped.values()) == [0, 700, 700, 700]
    left = partitions()
    assert not left & set(result.dropped)
    assert {partition_name(monday(n)) for n in range(-2, 3)} <= left
    assert retention.DEFAULT_PARTITION in left
    # and the kept weeks' rows are all there, those older than the cutoff among them
    stored = Event.objects.filter(at__gte=kept_from, at__lt=day_start(monday(1)))
    assert sorted(str(u) for u in stored.values_list("uuid", flat=True)) == newer
    assert Event.objects.filter(at__lt=result.cutoff).count() == sum(
        1 for e in events if kept_from <= e.at < result.cutoff
    )
    assert not Event.objects.filter(at__lt=kept_from).exists()
    # the default partition lost its rows older than the cutoff, and kept the one from ahead
    assert result.default_deleted == 2
    assert list(
        Event.objects.filter(task_key__in=["ancient", "clockless"]).values_list(
            "task_key", flat=True
        )
    ) == ["clockless"]
    # Then the tasks with no event left lost their stored findings, the others kept theirs
    assert result.forgotten_tasks == 4  # week-3, week-4, week-5 and ancient
    assert set(TaskCheck.objects.values_list("task_key", flat=True)) == {
        "steady",
        "week-0",
        "week-1",
        "week-2",
        "clockless",
    }
    assert result.oldest_kept == min(e.at for e in events if e.at >= kept_from)
    assert result.busy == []

    # And the store reads what is left, as before
    history = eventlog.task_events("steady")
    assert [r.id for r in history] == sorted(r.id for r in history)
    assert len(history) == 3 * 7 * 20 and min(r.at for r in history if r.at) >= kept_from
    assert len(eventlog.task_events("week-2")) == 7 * 80
    assert eventlog.task_events("week-3") == []
    recent, more = eventlog.recent_tasks()
    assert {s.task_key for s in recent} == {"steady", "week-0", "week-1", "week-2", "clockless"}
    assert not more
    assert next(s for s in recent if s.task_key == "steady").events == 3 * 7 * 20

    # And pruning again at once finds nothing more to do
    again = retention.prune(timedelta(days=14), now=NOW)
    assert (again.dropped, again.default_deleted, again.forgotten_tasks) == ({}, 0, 0)
    assert not again.changed


def test_a_dry_run_says_what_would_go_and_changes_nothing(month: dict[str, Any]) -> None:
    before = (Event.objects.count(), partitions(), TaskCheck.objects.count())

    result = retention.prune(timedelta(days=14), now=NOW, dry_run=True)

    assert len(result.dropped) == 4 and sum(result.dropped.values()) == 2100
    assert result.default_deleted == 2
    assert (Event.objects.count(), partitions(), TaskCheck.objects.count()) == before
    lines = result.lines()
    assert lines[0] == f"would drop {partition_name(monday(-6))} (0 events)"
    assert f"would drop {partition_name(monday(-3))} (700 events)" in lines
    assert any(line.startswith("would delete 2 events older than") for line in lines)
    assert not any(partition_name(monday(-2)) in line for line in lines)


def test_a_week_runs_from_monday_midnight_utc_to_the_next() -> None:
    # Given events at the edges of this week, which the migration made a partition for
    first, last = day_start(MONDAY), day_start(monday(1)) - timedelta(microseconds=1)
    inside = [event("edges", first), event("edges", last)]
    before = event("edges", first - timedelta(microseconds=1))
    after = event("edges", day_start(monday(1)))
    assert eventlog.append([*inside, before, after]) == (4, [])

    # Then this week's partition holds those from Monday 00:00 on, the next week's the next
    # Monday's, and last week's (no partition made for it) is in the default
    assert [partition_of(e.uuid) for e in inside] == [partition_name(MONDAY)] * 2
    assert partition_of(after.uuid) == partition_name(monday(1))
    assert partition_of(before.uuid) == retention.DEFAULT_PARTITION
    assert partition_name(MONDAY) == f"lifecycle_event_w{MONDAY:%Y%m%d}"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = %s",
            [partition_name(MONDAY)],
        )
        bound = cursor.fetchone()[0]
    assert bound == (f"FOR VALUES FROM ('{MONDAY} 00:00:00+00') TO ('{monday(1)} 00:00:00+00')")


def test_a_redelivered_event_is_stored_once_by_both_insert_paths() -> None:
    # Given an event stored once, in this week's partition, and one whose clock is years off
    today = event("redelivered", NOW)
    odd = event("redelivered", NOW + timedelta(days=3650))
    assert eventlog.append([today, odd]) == (2, [])
    assert partition_of(today.uuid) == partition_name(TODAY)
    assert partition_of(odd.uuid) == retention.DEFAULT_PARTITION

    # When the same messages come again, one by one and as a copied batch
    assert eventlog.append([today, odd]) == (0, [])
    assert copy_in([odd, today, event("redelivered", NOW)]) == 1

    # Then each is stored once: the same uuid and at find their first copy
    assert Event.objects.filter(uuid=today.uuid).count() == 1
    assert Event.objects.filter(uuid=odd.uuid).count() == 1
    assert Event.objects.filter(task_key="redelivered").count() == 3


def test_a_clock_far_off_lands_in_the_default_and_moves_to_its_week_when_made() -> None:
    # Given events whose times no partition covers: far ahead (two in one week), and long ago
    ahead, past = NOW + timedelta(days=900), datetime(1990, 5, 1, 8, tzinfo=UTC)
    sunday_night = day_start(week_of(ahead.date())) + WEEK - timedelta(seconds=1)
    late, later, early = (event("far-clock", at) for at in (ahead, sunday_night, past))
    assert eventlog.append([late, later, early]) == (3, [])
    assert {partition_of(e.uuid) for e in (late, later, early)} == {retention.DEFAULT_PARTITION}
    first_id = Event.objects.get(uuid=late.uuid).id

    # When the partitions of the week ahead (and the week after) are made
    made = retention.ensure_partitions(now=ahead, ahead_weeks=1)

    # Then that week's events moved into its partition, with their ids; the other stayed
    assert made == [partition_name(ahead.date()), partition_name(ahead.date() + WEEK)]
    assert made[0] == f"lifecycle_event_w{week_of(ahead.date()):%Y%m%d}"
    assert partition_of(late.uuid) == partition_of(later.uuid) == made[0]
    assert Event.objects.get(uuid=late.uuid).id == first_id
    assert partition_of(early.uuid) == retention.DEFAULT_PARTITION
    # and the new partition is like the others: deduplicated, announced, read by task
    assert eventlog.append([late]) == (0, [])
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", [made[0]])
        assert cursor.fetchall() == [("lifecycle_event_notify",)]
    assert [r.uuid for r in eventlog.task_events("far-clock")] == [
        late.uuid,
        later.uuid,
        early.uuid,
    ]
    # And making them again is nothing to do
    assert retention.ensure_partitions(now=ahead, ahead_weeks=1) == []


@pytest.mark.django_db(transaction=True)
def test_callers_at_once_make_each_partition_once() -> None:
    start = datetime(2200, 1, 1, tzinfo=UTC)  # a Wednesday: its week began on 2199-12-30
    names = [f"lifecycle_event_w{d}" for d in ("21991230", "22000106", "22000113", "22000120")]
    made: list[list[str]] = []
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            made.append(retention.ensure_partitions(now=start, ahead_weeks=3))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert sorted(n for m in made for n in m) == names
        assert set(names) <= partitions()
    finally:
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")


def test_maintain_makes_the_weeks_ahead_and_prunes_as_the_setting_says(settings: Any) -> None:
    # Given two weeks in which nothing made partitions (the migration made this week's and
    # the next two), and the setting unset
    later = NOW + 2 * WEEK
    old = event("maintained", NOW - timedelta(days=20))
    assert eventlog.append([old]) == (1, [])
    assert partition_of(old.uuid) == retention.DEFAULT_PARTITION
    settings.LIFECYCLE_RETENTION = None
    summary = retention.maintain(now=later)
    assert summary == (
        f"created 2 partitions ({partition_name(monday(3))}, {partition_name(monday(4))})"
    )
    assert {partition_name(monday(n)) for n in range(5)} <= partitions()
    assert retention.maintain(now=later) is None  # nothing left to do, nothing pruned
    assert Event.objects.filter(uuid=old.uuid).exists()

    # When a retention is set, the next pass prunes
    settings.LIFECYCLE_RETENTION = timedelta(days=14)
    summary = retention.maintain(now=later)
    assert summary == "pruned events older than 2w: deleted 1 event from lifecycle_event_default"
    assert not Event.objects.filter(uuid=old.uuid).exists()


def prune_command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("lifecycle", "prune", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_the_prune_command_says_what_it_drops_and_refuses_a_bad_age() -> None:
    # Given events 35, 21, 10 and 1 days ago, each in its week's partition
    now = datetime.now(UTC)
    retention.ensure_partitions(now=now - timedelta(days=35), ahead_weeks=5)
    times = {n: now - timedelta(days=n) for n in (35, 21, 10, 1)}
    assert eventlog.append([event("cli", at) for at in times.values()]) == (4, [])
    # 35 and 21 days ago are 5 and 3 weeks back; the cutoff, 14 days ago, is in the week
    # 2 weeks back, which is kept whole with those after it.
    old = [partition_name(times[n].date()) for n in (35, 21)]
    empty = partition_name(times[35].date() + WEEK)

    # When it is asked what it would do
    code, out, err = prune_command("--older-than", "14d", "--dry-run")
    # Then it says so, and does nothing
    assert (code, err) == (0, "")
    assert out.splitlines()[:3] == [
        f"would drop {old[0]} (1 event)",
        f"would drop {empty} (0 events)",
        f"would drop {old[1]} (1 event)",
    ]
    assert "oldest event that would be kept:" in out
    assert set(old) <= partitions() and Event.objects.filter(task_key="cli").count() == 4

    # When it is run
    code, out, err = prune_command("--older-than", "2w")
    assert (code, err) == (0, "")
    assert f"dropped {old[0]} (1 event)\n" in out and f"dropped {old[1]} (1 event)\n" in out
    assert not {*old, empty} & partitions()
    assert [e.at for e in Event.objects.filter(task_key="cli")] == [times[10], times[1]]

    # And a bad age is one line, exit 2, and nothing done
    for bad in ("7", "soon", "0d", "3 days"):
        code, out, err = prune_command(f"--older-than={bad}")
        assert (code, out) == (2, ""), bad
        assert err.startswith("prune: --older-than: ") and err.count("\n") <= 1, err


@pytest.mark.django_db(transaction=True)
def test_a_partition_whose_lock_is_not_granted_in_time_is_left_for_later() -> None:
    # Given an old week's partition, and a transaction elsewhere that read the events table
    day = date(2001, 1, 1)  # a Monday
    retention.ensure_partitions(now=day_start(day), ahead_weeks=0)
    assert eventlog.append([event("busy", day_start(day) + timedelta(hours=1))]) == (1, [])
    try:
        with psycopg.connect(database_conninfo(application_name="retention-test")) as reader:
            reader.execute("SELECT count(*) FROM lifecycle_event WHERE task_key = 'busy'")
            # When the prune runs while that transaction is open
            started = time.monotonic()
            code, out, err = prune_command("--older-than", "1d")
            waited = time.monotonic() - started
            # Then it waits no longer than its lock timeout, leaves the partition, says so
            assert waited < 10
            assert code == 1, err
            assert (
                f"left {partition_name(day)} in place: its lock was not granted within 2s;"
                " run again later"
            ) in out
            assert partition_name(day) in partitions()
            # and events are written meanwhile
            assert eventlog.append([event("busy", NOW)]) == (1, [])
        # When it runs again once that transaction has ended, the partition goes
        code, out, err = prune_command("--older-than", "1d")
        assert code == 0 and f"dropped {partition_name(day)} (1 event)" in out
        assert partition_name(day) not in partitions()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")


MIGRATION = import_module("lifecycle.migrations.0013_partitioned_events")


def test_the_migration_carries_an_existing_tables_rows_ids_and_grants_over() -> None:
    """0013 run on a table that holds events (its reverse first, to have one), all in this
    test's transaction: rows, ids, weekly partitions, indexes, trigger and grants."""
    with connection.cursor() as cursor:
        # Given the table as it was before 0013, with events of many weeks and odd clocks
        cursor.execute(MIGRATION.UNPARTITION)
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'lifecycle_event'::regclass")
        assert cursor.fetchone() == ("r",)
        cursor.execute(
            "INSERT INTO lifecycle_event (task_key, source, kind, at)"
            " SELECT 'old-' || (g % 7), 'api', 'read', now() - g * interval '1 day'"
            "   FROM generate_series(0, 59) AS g"
        )
        odd = [datetime(1999, 1, 1, tzinfo=UTC), NOW + timedelta(days=30), NOW - timedelta(500)]
        year_ago = NOW - timedelta(days=390)
        for at in [*odd, year_ago]:
            cursor.execute(
                "INSERT INTO lifecycle_event (task_key, source, kind, at)"
                " VALUES ('odd', 'api', 'read', %s)",
                [at],
            )
        cursor.execute("SELECT array_agg(id ORDER BY id), max(id) FROM lifecycle_event")
        ids, last = cursor.fetchone()

        # When 0013 runs
        cursor.execute(MIGRATION.PARTITION)

        # Then it is partitioned, holds the same rows, and gives the next id after the last
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'lifecycle_event'::regclass")
        assert cursor.fetchone() == ("p",)
        cursor.execute("SELECT array_agg(id ORDER BY id) FROM lifecycle_event")
        assert cursor.fetchone()[0] == ids
        assert eventlog.append([event("after", NOW)]) == (1, [])
        assert Event.objects.get(task_key="after").id == last + 1
        # with a partition for each week of the last 400 days that had events, this week and
        # the next 2, and the odd clocks (too old, too far ahead) in the default
        weeks = {week_of(TODAY - timedelta(days=n)) for n in range(60)} | {week_of(year_ago.date())}
        weeks |= {monday(n) for n in range(3)}
        assert len(weeks) in (12, 13)  # 60 days span 9 or 10 weeks; a year ago; 2 ahead
        assert {partition_name(w) for w in weeks} | {retention.DEFAULT_PARTITION} == partitions()
        cursor.execute(
            "SELECT at FROM lifecycle_event_default ORDER BY at",
        )
        assert [at for (at,) in cursor.fetchall()] == sorted([odd[0], odd[2], odd[1]])
        # the indexes and constraints by their names, the trigger, and the capture role's grants
        cursor.execute(
            "SELECT indexrelid::regclass::text, indisunique FROM pg_index"
            " WHERE indrelid = 'lifecycle_event'::regclass ORDER BY 1"
        )
        assert cursor.fetchall() == [
            ("lifecycle_event_expect", False),
            ("lifecycle_event_pkey", True),
            ("lifecycle_event_task_id", False),
            ("lifecycle_event_uuid_key", True),
        ]
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'lifecycle_event'::regclass")
        assert cursor.fetchall() == [("lifecycle_event_notify",)]
        cursor.execute(
            "SELECT has_table_privilege(r.oid, 'lifecycle_event', 'INSERT'),"
            " has_table_privilege(r.oid, 'lifecycle_event', 'SELECT'),"
            " has_sequence_privilege(r.oid, 'lifecycle_event_id_seq', 'USAGE')"
            " FROM pg_roles r WHERE r.rolname = current_database() || '_lifecycle_capture'"
        )
        grants = cursor.fetchall()
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if cursor.fetchone()[0]:  # 0010 made the role only where it ran as a superuser
            assert grants == [(True, False, True)]
