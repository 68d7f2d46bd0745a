"""The home page's search over the stored checks: every filter, in combination, with counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from lifecycle.check import search
from lifecycle.models import Event, Run, TaskCheck

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def task(
    key: str,
    *,
    status: str,
    scenario: str | None = None,
    verdict: str | None = None,
    kinds: list[str] | None = None,
    hours: int = 0,
    last_id: int = 0,
) -> None:
    Event.objects.create(
        task_key=key,
        source="db",
        kind="insert",
        status=status,
        at=T0 + timedelta(hours=hours),
        body={},
    )
    TaskCheck.objects.create(
        task_key=key,
        event_count=5,
        last_event_id=last_id,
        kinds=kinds or [],
        status=status,
        scenario=scenario,
        verdict=verdict,
        first_at=T0 + timedelta(hours=hours),
        last_at=T0 + timedelta(hours=hours, minutes=1),
    )


@pytest.fixture
def tasks(postgres: None) -> None:
    task(
        "job-1",
        status="FAILED",
        scenario="cached-read",
        verdict="fail",
        kinds=["stale_read", "expectation_mismatch"],
        hours=0,
        last_id=1,
    )
    task("job-2", status="COMPLETED", scenario="cached-read", verdict="pass", hours=1, last_id=2)
    task("job-3", status="FAILED", scenario="fails", verdict="pass", hours=2, last_id=3)
    task(
        "other-4",
        status="RUNNING",
        scenario="slow",
        verdict=None,
        kinds=["stuck"],
        hours=3,
        last_id=4,
    )
    task("other-5", status="COMPLETED", hours=4, last_id=5)  # no run


def keys(filters: search.Filters) -> list[str]:
    found, _, _ = search.search(filters)
    return [s.task_key for s in found]


def test_filters_combine(tasks: None) -> None:
    assert search.search(search.Filters(status="FAILED"))[2] == 2
    assert search.Filters(status="FAILED", scenario="cached-read").active
    found, _, total = search.search(search.Filters(status="FAILED", scenario="cached-read"))
    assert total == 1
    assert search.search(search.Filters(verdict="none"))[2] == 1
    assert search.search(search.Filters(verdict="running"))[2] == 1
    assert search.search(search.Filters(findings="any"))[2] == 2
    assert search.search(search.Filters(findings="stuck", prefix="other-"))[2] == 1
    assert search.search(search.Filters(prefix="job-"))[2] == 3
    assert search.search(search.Filters(prefix="job_"))[2] == 0  # a prefix, not a pattern
    since = search.Filters(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=3))
    assert search.search(since)[2] == 2


def test_each_filter_counts_its_values_under_the_others(tasks: None) -> None:
    facets = {f.name: dict(f.values) for f in search.facets(search.Filters(scenario="cached-read"))}

    # Statuses among cached-read's tasks; scenarios counted without the scenario filter
    assert facets["status"] == {"FAILED": 1, "COMPLETED": 1}
    assert facets["scenario"] == {"cached-read": 2, "fails": 1, "slow": 1}
    assert facets["verdict"] == {"fail": 1, "pass": 1}
    assert facets["findings"] == {"any": 1, "stale_read": 1, "expectation_mismatch": 1}


def test_the_home_page_searches_shows_counts_and_keeps_the_filters(
    tasks: None, client: Client
) -> None:
    page = client.get("/?status=FAILED&scenario=cached-read").content.decode()

    assert "1 task ·" in page
    assert 'data-task="job-1"' in page and 'data-task="job-3"' not in page
    # Each filter's counts are under the other filters: scenarios of FAILED tasks, and
    # statuses of cached-read's
    assert '<option value="cached-read" selected>cached-read (1)</option>' in page
    assert '<option value="fails" >fails (1)</option>' in page
    assert '<option value="FAILED" selected>FAILED (1)</option>' in page
    assert '<option value="COMPLETED" >COMPLETED (1)</option>' in page


def test_a_bad_filter_is_a_400_that_says_why(tasks: None, client: Client) -> None:
    response = client.get("/?since=yesterday&status=FAILED")

    assert response.status_code == 400
    page = response.content.decode()
    assert "since &#x27;yesterday&#x27; is not a date or time" in page
    assert 'data-task="job-1"' in page  # the good filters still apply


@pytest.mark.parametrize("name", ["status", "scenario", "prefix"])
def test_a_nul_in_a_filter_is_a_400_that_says_why(tasks: None, client: Client, name: str) -> None:
    response = client.get(f"/?{name}=job%00&verdict=fail")

    assert response.status_code == 400
    page = response.content.decode()
    assert f"{name} holds a NUL character" in page
    assert 'data-task="job-1"' in page  # the good filters still apply


@pytest.mark.parametrize("query", ["", "&status=FAILED"])
def test_a_page_past_any_list_is_a_400_that_shows_the_first(
    tasks: None, client: Client, query: str
) -> None:
    response = client.get(f"/?page=99999999999999999{query}")

    assert response.status_code == 400
    page = response.content.decode()
    assert "page is at most 10,000" in page
    assert 'data-task="job-1"' in page


@pytest.mark.django_db(transaction=True)
def test_the_maintainer_keeps_what_the_search_reads(postgres: None) -> None:
    from lifecycle.check.maintainer import Maintainer

    run = Run.objects.create(
        scenario="slow", expected="COMPLETED", task_key="mt-search", verdict="pass", state="done"
    )
    for n, status in enumerate(["PENDING", "RUNNING", "COMPLETED"]):
        Event.objects.create(
            task_key="mt-search",
            source="db",
            kind="update",
            status=status,
            at=T0 + timedelta(seconds=n),
            txid=10 + n,
            body={"table": "public.lab_task"},
        )

    Maintainer(min_interval=0, cost_factor=0).once()

    row = TaskCheck.objects.get(task_key="mt-search")
    assert (row.status, row.scenario, row.verdict) == ("COMPLETED", run.scenario, "pass")
    assert (row.first_at, row.last_at) == (T0, T0 + timedelta(seconds=2))


def test_tasks_whose_stored_check_is_behind_are_checked_in_one_read(
    postgres: None, django_assert_max_num_queries: Any
) -> None:
    from lifecycle.check import findings
    from lifecycle.store import eventlog

    # Given ten moving tasks the maintainer has not checked yet, each overwriting FAILED
    for n in range(10):
        old = None
        for step, status in enumerate(["PENDING", "RUNNING", "FAILED", "COMPLETED"]):
            Event.objects.create(
                task_key=f"moving-{n}",
                source="db",
                kind="update" if old else "insert",
                status=status,
                at=T0 + timedelta(minutes=step),
                txid=1000 + step,
                body={"old_status": old, "new_status": status, "changed": ["status"]},
            )
            old = status
    summaries = eventlog.summaries_of([f"moving-{n}" for n in range(10)])
    # When the home page sets their findings, it reads their histories in one query
    with django_assert_max_num_queries(4):
        findings.with_findings(summaries)
    # Then each is checked all the same
    assert [s.findings for s in summaries] == [["terminal_overwrite"]] * 10
