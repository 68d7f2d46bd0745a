"""The maintainer keeps stored findings current from the event table; pages only read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client

from lifecycle.check import findings
from lifecycle.check.maintainer import Maintainer
from lifecycle.models import CheckCursor, Event, TaskCheck

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def stuck_task(key: str) -> None:
    """A task the worker acked while its row was left RUNNING: the checker says stuck."""
    rows = [
        (
            "db",
            "insert",
            "PENDING",
            {"old_status": None, "new_status": "PENDING", "table": "public.lab_task"},
        ),
        ("broker", "start", None, {"message_id": "m1", "attempt": 1}),
        (
            "db",
            "update",
            "RUNNING",
            {"old_status": "PENDING", "new_status": "RUNNING", "table": "public.lab_task"},
        ),
        ("broker", "ack", None, {"message_id": "m1", "attempt": 1}),
    ]
    for n, (source, kind, status, body) in enumerate(rows):
        Event.objects.create(
            task_key=key,
            source=source,
            kind=kind,
            status=status,
            at=T0 + timedelta(milliseconds=10 * n),
            txid=900 + n if source == "db" else None,
            body=body,
        )


def test_a_pass_stores_the_findings_of_the_tasks_whose_events_moved(postgres: None) -> None:
    maintainer = Maintainer(min_interval=0, cost_factor=0)
    stuck_task("mt-a")

    # When the maintainer makes its first pass, then a task moves
    maintainer.once()
    assert TaskCheck.objects.get(task_key="mt-a").kinds == ["stuck"]
    assert findings.first_pass_done()
    Event.objects.create(
        task_key="mt-a",
        source="db",
        kind="update",
        status="COMPLETED",
        at=T0 + timedelta(seconds=1),
        txid=990,
        body={"old_status": "RUNNING", "new_status": "COMPLETED", "table": "public.lab_task"},
    )
    stuck_task("mt-b")
    maintainer.once()

    # Then both stored checks are current: a's finding is gone, b's is there
    assert TaskCheck.objects.get(task_key="mt-a").kinds == []
    assert TaskCheck.objects.get(task_key="mt-b").kinds == ["stuck"]
    assert CheckCursor.objects.get(pk=1).checked_through == Event.objects.order_by("-id").first().id


def test_the_findings_filter_reads_stored_checks_and_runs_no_checker(
    postgres: None, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck_task("mt-c")
    Maintainer().once()
    stuck_task("mt-d")  # not checked yet: the page must not check it itself

    def no_checking(*args: object, **kwargs: object) -> None:
        raise AssertionError("a page view ran the checker over the history")

    monkeypatch.setattr(findings, "refresh", no_checking)
    page = client.get("/?findings=stuck").content.decode()

    assert "mt-c" in page and "mt-d" not in page
    assert 'data-testid="first-pass"' not in page


def test_the_page_says_when_the_first_pass_is_under_way(postgres: None, client: Client) -> None:
    CheckCursor.objects.update_or_create(pk=1, defaults={"checked_through": 0})
    page = client.get("/?findings=any").content.decode()
    assert 'data-testid="first-pass"' in page


def test_a_task_checked_moments_ago_waits_its_turn(postgres: None) -> None:
    maintainer = Maintainer(min_interval=60)
    stuck_task("mt-e")
    maintainer.once()
    Event.objects.create(task_key="mt-e", source="broker", kind="enqueue", at=T0, body={})
    maintainer.once()  # within a minute of its last check: deferred, not lost

    assert maintainer.stats.deferred >= 1
    assert "mt-e" in maintainer._pending
    maintainer._next_check["mt-e"] = 0
    maintainer.once()
    assert TaskCheck.objects.get(task_key="mt-e").event_count == 5


def test_the_maintainer_waits_out_a_cut_connection(postgres: None) -> None:
    import psycopg

    from lifecycle.runtime.database import conninfo

    stuck_task("mt-f")
    maintainer = Maintainer(poll=0.1, min_interval=0, cost_factor=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    done = []

    def until(stats: object) -> bool:
        if not done:
            done.append(1)
            with psycopg.connect(conninfo(), autocommit=True) as other:
                other.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "application_name = 'lifecycle-maintain' AND datname = current_database()"
                )
            stuck_task("mt-g")
            return False
        return TaskCheck.objects.filter(task_key="mt-g").exists()

    maintainer.run(until=until)
    assert TaskCheck.objects.get(task_key="mt-g").kinds == ["stuck"]


def test_an_event_that_commits_after_a_newer_one_is_still_checked(postgres: None) -> None:
    import psycopg

    from lifecycle.runtime.database import conninfo

    maintainer = Maintainer(min_interval=0, cost_factor=0)
    maintainer.once()
    insert = (
        "INSERT INTO lifecycle_event (task_key, source, kind, status, at, txid, body)"
        " VALUES (%s, 'db', %s, %s, now(), %s, %s)"
    )
    body = '{"old_status": null, "new_status": "RUNNING", "table": "public.lab_task"}'
    with (
        psycopg.connect(conninfo()) as slow,
        psycopg.connect(conninfo(), autocommit=True) as quick,
    ):
        # Given a writer whose event got an id first but commits last
        slow.execute(insert, ["mt-late", "insert", "RUNNING", 1, body])
        quick.execute(
            insert, ["mt-early", "insert", "PENDING", 2, body.replace("RUNNING", "PENDING")]
        )
        maintainer.once()
        assert TaskCheck.objects.filter(task_key="mt-early").exists()
        assert not TaskCheck.objects.filter(task_key="mt-late").exists()
        slow.commit()

    # When the maintainer passes again, Then the late one is checked too
    maintainer.once()
    assert TaskCheck.objects.filter(task_key="mt-late").exists()


def test_an_idle_pass_reads_nothing_but_the_new_rows(postgres: None) -> None:
    stuck_task("mt-idle")
    maintainer = Maintainer(min_interval=0, cost_factor=0)
    maintainer.once()
    checked = maintainer.stats.checked

    for _ in range(3):
        maintainer.once()

    assert maintainer.stats.checked == checked  # nothing moved: nothing rechecked


def test_a_commit_long_after_its_id_was_taken_is_found_by_its_notify(postgres: None) -> None:
    from lifecycle.check.maintainer import Position

    maintainer = Maintainer(min_interval=0, cost_factor=0)
    maintainer.once()
    assert maintainer._position is not None
    # Given an id the maintainer gave up waiting for (its transaction ran for minutes)
    late = Event.objects.create(task_key="mt-very-late", source="broker", kind="enqueue", body={})
    position: Position = maintainer._position
    position.high = late.id
    position.forgotten[late.id] = None

    # When its NOTIFY arrives, Then the next pass checks its task
    maintainer._noted(str(late.id))
    maintainer._noted("not an id")
    maintainer.once()
    assert TaskCheck.objects.filter(task_key="mt-very-late").exists()


def test_a_pass_over_hundreds_of_moved_tasks_checks_them_in_a_few_queries(
    postgres: None,
) -> None:
    from django.test.utils import CaptureQueriesContext

    # Given a first pass done, then 300 tasks that moved
    maintainer = Maintainer(min_interval=0, cost_factor=0)
    maintainer.once()
    for n in range(300):
        stuck_task(f"mt-many-{n}")

    # When the maintainer passes
    with CaptureQueriesContext(connection) as queries:
        maintainer.once()

    # Then each task's check is stored, current, with its finding
    stored = TaskCheck.objects.filter(task_key__startswith="mt-many-")
    assert stored.count() == 300
    assert {tuple(c.kinds) for c in stored} == {("stuck",)}
    assert {c.event_count for c in stored} == {4}
    # in a handful of queries for all of them, not a few for each
    assert len(queries) <= 12, [q["sql"][:80] for q in queries]


def test_each_task_is_checked_against_its_latest_run_else_a_tests_expectation(
    postgres: None,
) -> None:
    from lifecycle.models import Run

    # Given a task with runs and a test's expectation, one with only the expectation, and
    # one with neither
    for key in ("mt-run", "mt-stated", "mt-none"):
        stuck_task(key)
    Run.objects.create(scenario="older", task_key="mt-run", expected="FAILED", verdict="pass")
    Run.objects.create(scenario="fails", task_key="mt-run", expected="COMPLETED", verdict="fail")
    for key, status in (("mt-run", "PENDING"), ("mt-stated", "COMPLETED")):
        Event.objects.create(
            task_key=key, source="probe", kind="expect", status=status, at=T0, body={}
        )

    # When they are checked
    findings.refresh(["mt-run", "mt-stated", "mt-none"])

    # Then each stored check has the expectation it was checked against, and the run's
    stored = {
        c.task_key: (c.expected, c.scenario, c.verdict, c.event_count, c.status)
        for c in TaskCheck.objects.filter(task_key__in=["mt-run", "mt-stated", "mt-none"])
    }
    assert stored == {
        "mt-run": ("COMPLETED", "fails", "fail", 5, "RUNNING"),
        "mt-stated": ("COMPLETED", None, None, 5, "RUNNING"),
        "mt-none": (None, None, None, 4, "RUNNING"),
    }
    # and a check stays current until something it rests on changes: the run's verdict
    assert findings.refresh(["mt-run", "mt-stated", "mt-none"], timings=True) == {}
    Run.objects.filter(scenario="fails").update(verdict="pass")
    assert list(findings.refresh(["mt-run", "mt-stated", "mt-none"], timings=True)) == ["mt-run"]


def test_an_expectation_as_long_as_any_status_is_kept_and_a_refused_check_is_skipped(
    postgres: None, caplog: pytest.LogCaptureFixture
) -> None:
    # Given tasks whose tests expected statuses of 33 and 64 characters (any status an
    # event may carry), once a 33-character one failed the maintainer at every pass
    maintainer = Maintainer(min_interval=0, cost_factor=0)
    for key, length in (("long-33", 33), ("long-64", 64)):
        stuck_task(key)
        Event.objects.create(
            task_key=key, source="probe", kind="expect", status="E" * length, at=T0, body={}
        )
    # When the maintainer passes
    maintainer.once()
    # Then their checks are stored with what they expected
    kept = dict(TaskCheck.objects.values_list("task_key", "expected"))
    assert kept == {"long-33": "E" * 33, "long-64": "E" * 64}
    assert maintainer.stats.errors == 0

    # And a check the table refuses (here, longer than any status) is skipped with one
    # logged line, the others of its batch stored all the same
    stuck_task("fine-1")
    stuck_task("fine-2")
    rows = [
        findings._kept_row(key, findings.eventlog.task_events(key), task, [])
        for key, task in (
            ("fine-1", _task("RUNNING")),
            ("refused", _task("X" * 65)),
            ("fine-2", _task("RUNNING")),
        )
    ]
    findings._keep(rows)
    assert set(TaskCheck.objects.values_list("task_key", flat=True)) >= {"fine-1", "fine-2"}
    assert not TaskCheck.objects.filter(task_key="refused").exists()
    assert any("cannot store the check of task 'refused'" in r.getMessage() for r in caplog.records)


def _task(expected: str) -> findings._Task:
    return findings._Task(
        count=4,
        last=1,
        checked_count=None,
        checked_last=None,
        checked_expected=None,
        checked_verdict=None,
        has_run=False,
        run_expected=None,
        scenario=None,
        run_verdict=None,
        stated=expected,
    )
