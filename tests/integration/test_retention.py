"""The partitioned event table on real PostgreSQL: pruning drops whole days, the default
partition catches any clock and gives its rows up to a new day's partition, a redelivered
event is still stored once, and migration 0013 carries an existing table's rows over."""

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

from lifecycle import findings, retention, store
from lifecycle.events import IncomingEvent
from lifecycle.ingest import database_conninfo
from lifecycle.models import Event, TaskCheck
from lifecycle.retention import day_start, partition_name
from tests.services import require_postgres

require_postgres()

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

INGEST = store.INGEST
# Midday, so that the hours around each synthetic event stay in its day.
NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
TODAY = NOW.date()


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
    """31 days of events (100 a day, 3,100 in all) and two in the default partition, each
    task with its stored check.

    ``steady`` has events every day; ``week-0`` .. ``week-4`` each have a week's (days 0-6
    ago, 7-13, ...); ``ancient`` has two events 40 and 45 days ago, which no partition
    covers; ``clockless`` one 400 days ahead.
    """
    retention.ensure_partitions(now=NOW - timedelta(days=31), ahead_days=31)
    events = []
    for days_ago in range(31):
        day = NOW - timedelta(days=days_ago)
        for i in range(100):
            at = day + timedelta(minutes=7 * i - 350)  # 06:10 to 17:43
            task = "steady" if i % 5 == 0 else f"week-{days_ago // 7}"
            events.append(event(task, at, status="COMPLETED" if i == 99 else "RUNNING"))
    outside = [
        event("ancient", NOW - timedelta(days=45)),
        event("ancient", NOW - timedelta(days=40)),
        event("clockless", NOW + timedelta(days=400)),
    ]
    assert store.append(events + outside) == (3103, [])
    findings.refresh()
    assert set(TaskCheck.objects.values_list("task_key", flat=True)) == {
        "steady",
        "ancient",
        "clockless",
        *(f"week-{n}" for n in range(5)),
    }
    return {"events": events, "outside": outside}


def test_a_month_of_events_pruned_to_a_week_drops_the_old_days(month: dict[str, Any]) -> None:
    # Given a month of events in daily partitions, and old ones in the default partition
    events: list[IncomingEvent] = month["events"]
    kept_from = day_start(TODAY - timedelta(days=7))  # the cutoff's day is kept whole
    newer = sorted(e.uuid for e in events if e.at >= kept_from)
    assert partition_of(month["outside"][0].uuid) == retention.DEFAULT_PARTITION

    # When events older than 7 days are pruned
    result = retention.prune(timedelta(days=7), now=NOW)

    # Then every partition of a day that ended before the cutoff is gone, and no other
    old_days = [TODAY - timedelta(days=n) for n in range(8, 32)]
    assert list(result.dropped) == [partition_name(d) for d in sorted(old_days)]
    assert sum(result.dropped.values()) == 23 * 100  # days 8 to 30 ago; 31 days ago is empty
    left = partitions()
    assert not left & set(result.dropped)
    assert {partition_name(TODAY + timedelta(days=n)) for n in range(-7, 8)} <= left
    assert retention.DEFAULT_PARTITION in left
    # and the newer days' rows are all there, the older ones none
    stored = Event.objects.filter(at__gte=kept_from, at__lt=NOW + timedelta(days=1))
    assert sorted(str(u) for u in stored.values_list("uuid", flat=True)) == newer
    assert not Event.objects.filter(at__lt=kept_from).exists()
    # the default partition lost its old rows, and kept the one from a clock ahead
    assert result.default_deleted == 2
    assert list(
        Event.objects.filter(task_key__in=["ancient", "clockless"]).values_list(
            "task_key", flat=True
        )
    ) == ["clockless"]
    # Then the tasks with no event left lost their stored findings, the others kept theirs
    assert result.forgotten_tasks == 4
    assert set(TaskCheck.objects.values_list("task_key", flat=True)) == {
        "steady",
        "week-0",
        "week-1",
        "clockless",
    }
    assert result.oldest_kept == min(e.at for e in events if e.at >= kept_from)
    assert result.busy == []

    # And the store reads what is left, as before
    history = store.task_events("steady")
    assert [r.id for r in history] == sorted(r.id for r in history)
    assert len(history) == 8 * 20 and min(r.at for r in history if r.at) >= kept_from
    assert len(store.task_events("week-1")) == 80  # only its day 7 ago is left
    assert store.task_events("week-3") == []
    recent, more = store.recent_tasks()
    assert {s.task_key for s in recent} == {"steady", "week-0", "week-1", "clockless"}
    assert not more
    assert next(s for s in recent if s.task_key == "steady").events == 160


def test_a_dry_run_says_what_would_go_and_changes_nothing(month: dict[str, Any]) -> None:
    before = (Event.objects.count(), partitions(), TaskCheck.objects.count())

    result = retention.prune(timedelta(days=7), now=NOW, dry_run=True)

    assert len(result.dropped) == 24 and sum(result.dropped.values()) == 2300
    assert result.default_deleted == 2
    assert (Event.objects.count(), partitions(), TaskCheck.objects.count()) == before
    lines = result.lines()
    assert lines[0] == f"would drop {partition_name(TODAY - timedelta(days=31))} (0 events)"
    assert f"would drop {partition_name(TODAY - timedelta(days=8))} (100 events)" in lines
    assert any(line.startswith("would delete 2 events older than") for line in lines)


def test_a_redelivered_event_is_stored_once_by_both_insert_paths() -> None:
    # Given an event stored once, in today's partition, and one whose clock is years off
    today = event("redelivered", NOW)
    odd = event("redelivered", NOW + timedelta(days=3650))
    assert store.append([today, odd]) == (2, [])
    assert partition_of(today.uuid) == partition_name(TODAY)
    assert partition_of(odd.uuid) == retention.DEFAULT_PARTITION

    # When the same messages come again, one by one and as a copied batch
    assert store.append([today, odd]) == (0, [])
    assert copy_in([odd, today, event("redelivered", NOW)]) == 1

    # Then each is stored once: the same uuid and at find their first copy
    assert Event.objects.filter(uuid=today.uuid).count() == 1
    assert Event.objects.filter(uuid=odd.uuid).count() == 1
    assert Event.objects.filter(task_key="redelivered").count() == 3


def test_a_clock_far_off_lands_in_the_default_and_moves_to_its_day_when_made() -> None:
    # Given events whose times no partition covers: far ahead, and long ago
    ahead, past = NOW + timedelta(days=900), datetime(1990, 5, 1, 8, tzinfo=UTC)
    late, early = event("far-clock", ahead), event("far-clock", past)
    assert store.append([late, early]) == (2, [])
    assert {partition_of(late.uuid), partition_of(early.uuid)} == {retention.DEFAULT_PARTITION}
    first_id = Event.objects.get(uuid=late.uuid).id

    # When the partitions of the day ahead (and the day after) are made
    made = retention.ensure_partitions(now=ahead, ahead_days=1)

    # Then the event moved into its day's partition, with its id; the other stayed
    assert made == [partition_name(ahead.date()), partition_name(ahead.date() + timedelta(1))]
    assert partition_of(late.uuid) == partition_name(ahead.date())
    assert Event.objects.get(uuid=late.uuid).id == first_id
    assert partition_of(early.uuid) == retention.DEFAULT_PARTITION
    # and the new partition is like the others: deduplicated, announced, read by task
    assert store.append([late]) == (0, [])
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", [made[0]])
        assert cursor.fetchall() == [("lifecycle_event_notify",)]
    assert [r.uuid for r in store.task_events("far-clock")] == [late.uuid, early.uuid]
    # And making them again is nothing to do
    assert retention.ensure_partitions(now=ahead, ahead_days=1) == []


@pytest.mark.django_db(transaction=True)
def test_callers_at_once_make_each_partition_once() -> None:
    start = datetime(2200, 1, 1, tzinfo=UTC)
    made: list[list[str]] = []
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            made.append(retention.ensure_partitions(now=start, ahead_days=3))
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
        names = [partition_name(date(2200, 1, d)) for d in (1, 2, 3, 4)]
        assert sorted(n for m in made for n in m) == names
        assert set(names) <= partitions()
    finally:
        with connection.cursor() as cursor:
            for d in (1, 2, 3, 4):
                cursor.execute(f"DROP TABLE IF EXISTS {partition_name(date(2200, 1, d))}")


def test_maintain_makes_the_days_ahead_and_prunes_as_the_setting_says(settings: Any) -> None:
    # Given three days in which nothing made partitions, and the setting unset
    later = NOW + timedelta(days=3)
    old = event("maintained", NOW - timedelta(days=20))
    assert store.append([old]) == (1, [])
    settings.LIFECYCLE_RETENTION = None
    summary = retention.maintain(now=later)
    assert summary is not None and summary.startswith("created 3 partitions")
    assert partition_name(later.date() + timedelta(days=7)) in partitions()
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
    # Given events 20, 10 and 1 days ago, each in its day's partition
    now = datetime.now(UTC)
    retention.ensure_partitions(now=now - timedelta(days=20), ahead_days=20)
    times = {n: now - timedelta(days=n) for n in (20, 10, 1)}
    assert store.append([event("cli", at) for at in times.values()]) == (3, [])
    old = [partition_name(times[n].date()) for n in (20, 10)]

    # When it is asked what it would do
    code, out, err = prune_command("--older-than", "7d", "--dry-run")
    # Then it says so, and does nothing
    assert (code, err) == (0, "")
    assert f"would drop {old[0]} (1 event)" in out and f"would drop {old[1]} (1 event)" in out
    assert "oldest event that would be kept:" in out
    assert set(old) <= partitions() and Event.objects.filter(task_key="cli").count() == 3

    # When it is run
    code, out, err = prune_command("--older-than", "1w")
    assert (code, err) == (0, "")
    assert f"dropped {old[0]} (1 event)\n" in out and f"dropped {old[1]} (1 event)\n" in out
    assert not set(old) & partitions()
    assert [e.at for e in Event.objects.filter(task_key="cli")] == [times[1]]

    # And a bad age is one line, exit 2, and nothing done
    for bad in ("7", "soon", "0d", "3 days"):
        code, out, err = prune_command(f"--older-than={bad}")
        assert (code, out) == (2, ""), bad
        assert err.startswith("prune: --older-than: ") and err.count("\n") <= 1, err


@pytest.mark.django_db(transaction=True)
def test_a_partition_whose_lock_is_not_granted_in_time_is_left_for_later() -> None:
    # Given an old day's partition, and a transaction elsewhere that read the events table
    day = date(2001, 1, 1)
    retention.ensure_partitions(now=day_start(day), ahead_days=0)
    assert store.append([event("busy", day_start(day) + timedelta(hours=1))]) == (1, [])
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
            assert store.append([event("busy", NOW)]) == (1, [])
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
    test's transaction: rows, ids, partitions, indexes, trigger and grants."""
    with connection.cursor() as cursor:
        # Given the table as it was before 0013, with events of many days and odd clocks
        cursor.execute(MIGRATION.UNPARTITION)
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'lifecycle_event'::regclass")
        assert cursor.fetchone() == ("r",)
        cursor.execute(
            "INSERT INTO lifecycle_event (task_key, source, kind, at)"
            " SELECT 'old-' || (g % 7), 'api', 'read', now() - g * interval '1 day'"
            "   FROM generate_series(0, 59) AS g"
        )
        odd = [datetime(1999, 1, 1, tzinfo=UTC), NOW + timedelta(days=30), NOW - timedelta(500)]
        for at in odd:
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
        assert store.append([event("after", NOW)]) == (1, [])
        assert Event.objects.get(task_key="after").id == last + 1
        # with a partition for each day that had events, and the odd clocks in the default
        days = {TODAY + timedelta(days=n) for n in range(-59, 8)}
        assert {partition_name(d) for d in days} | {retention.DEFAULT_PARTITION} == partitions()
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
