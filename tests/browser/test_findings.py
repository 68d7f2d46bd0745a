"""Findings as a user meets them: live on the run page, as badges and a filter at home."""

from __future__ import annotations

import re

import pytest

from lifecycle.models import Run

pytestmark = pytest.mark.browser


def test_a_finding_appears_live_pinned_to_its_events(stack, page, live_db):
    # Given the home page, the user runs a scenario that reproduces a swallowed error
    page.goto(stack.base_url + "/")
    page.get_by_test_id("run-swallowed-error").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.evaluate("window.__sameDocument = true")

    # Then, without a reload, the verdict fails and the checker names the mismatch
    page.wait_for_selector("[data-testid=verdict][data-verdict=fail]")
    finding = page.locator("[data-testid=finding][data-kind=expectation_mismatch]")
    finding.wait_for()
    assert finding.get_attribute("data-cause") == "committed"
    assert "COMPLETED" in finding.inner_text()
    assert page.evaluate("window.__sameDocument") is True

    # And its mentions link to events on the timeline, which carry the finding's badge
    href = finding.locator("p a").first.get_attribute("href")
    assert href.startswith("#event-")
    assert page.locator(f"{href}.has-finding").count() == 1
    # The worker's logged error is on the Warnings lane, before its COMPLETED commit
    page.wait_for_selector("[data-testid=event][data-source=log]")


def listed_after_reloads(page, row, timeout: float = 10.0) -> None:
    """Reload until the row is listed: the maintainer stores a task's findings moments
    after its last event (the verdict's), as a user's reload would find."""
    from tests.conftest import wait_for

    def listed() -> bool:
        if row.count():
            return True
        page.reload()
        return False

    wait_for(listed, timeout)


def test_the_home_page_shows_finding_badges_and_filters_by_kind(stack, page, live_db):
    status, run = stack.post("/api/scenarios/overwrite-after-failure/runs")
    assert status == 201
    from tests.conftest import wait_for

    wait_for(lambda: stack.get(f"/api/runs/{run['id']}")[1]["state"] == "done", 30)

    page.goto(stack.base_url + "/?findings=terminal_overwrite")
    row = page.locator(f"#task-{run['task']}")
    listed_after_reloads(page, row)
    assert row.count() == 1
    assert "terminal_overwrite" in " ".join(row.get_by_test_id("finding-badge").all_inner_texts())
    # every listed task has that finding, and clean ones are not listed
    rows = page.locator("[data-testid=task-row]")
    for i in range(rows.count()):
        badges = " ".join(rows.nth(i).get_by_test_id("finding-badge").all_inner_texts())
        assert "terminal_overwrite" in badges
    clean = Run.objects.filter(scenario="succeeds", state="done").exclude(task_key=None).first()
    if clean:
        assert page.locator(f"#task-{clean.task_key}").count() == 0

    # The kind filter is a plain form: choosing another kind lists those tasks
    page.get_by_test_id("filter-kind").select_option("expectation_mismatch")
    page.wait_for_url(re.compile(r"findings=expectation_mismatch"))
    listed_after_reloads(page, page.locator(f"#task-{run['task']}"))
    assert page.locator(f"#task-{run['task']}").count() == 1


def test_a_scenario_page_lists_its_runs_and_how_often_it_failed(stack, page, live_db):
    runs = Run.objects.filter(scenario="swallowed-error", state="done")
    total, failed = runs.count(), runs.filter(verdict="fail").count()
    page.goto(stack.base_url + "/scenarios/swallowed-error")
    rate = page.get_by_test_id("failure-rate").inner_text()
    assert f"{failed} of {total} run" in rate
    assert page.get_by_test_id("run-list").locator("li").count() == min(total, 200) or total == 0
