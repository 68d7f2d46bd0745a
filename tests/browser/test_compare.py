"""Comparing two runs of one scenario, in Chromium, against the live stack.

A real divergence within one scenario, cheaply: two runs of `fails`, and in the second a
late writer (this test, standing in for a cleanup path) commits COMPLETED over the
worker's FAILED while the probe is still polling. The trigger records that commit like
any other, the probe reads COMPLETED and the run fails, as `overwrite-after-failure` does.
"""

from __future__ import annotations

import re

import pytest

from lifecycle.lab.models import Task
from tests.browser.conftest import logged_in_context
from tests.conftest import wait_for

pytestmark = pytest.mark.browser


def finished(stack, run_id: int) -> dict:
    """The run once it is done and its verdict event has been ingested."""

    def done():
        _, run = stack.get(f"/api/runs/{run_id}")
        if run["state"] != "done":
            return None
        _, timeline = stack.get(f"/api/tasks/{run['task']}/timeline")
        verdicts = [e for e in timeline.get("events", []) if e["kind"] == "verdict"]
        return run if verdicts else None

    return wait_for(done, 40, 0.2, f"run {run_id} to finish")


def start(stack, scenario: str) -> dict:
    status, run = stack.post(f"/api/scenarios/{scenario}/runs")
    assert status == 201, run
    return run


def overwritten_run(stack) -> dict:
    """A run of `fails` whose FAILED a late writer overwrites with COMPLETED."""
    run = start(stack, "fails")
    wait_for(
        lambda: Task.objects.filter(pk=run["task"], status="FAILED").exists(),
        20,
        0.02,
        "the worker to commit FAILED",
    )
    Task.objects.filter(pk=run["task"]).update(status="COMPLETED")
    return finished(stack, run["id"])


def rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "[data-testid=compare-row]",
        "els => els.map(e => ({step: e.dataset.step, state: e.dataset.state, text: e.innerText}))",
    )


def test_two_clean_runs_align_and_the_page_reads_without_javascript(stack, browser, live_db):
    # Given two runs of `fails`, both passing
    first = finished(stack, start(stack, "fails")["id"])
    second = finished(stack, start(stack, "fails")["id"])
    assert (first["verdict"], second["verdict"]) == ("pass", "pass")

    # When someone opens their comparison with JavaScript off
    context = logged_in_context(browser, stack, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{stack.base_url}/runs/{second['id']}/compare/{first['id']}")

        # Then the server rendered both lifecycles, aligned, with no divergence marked
        assert page.get_by_test_id("compare").is_visible()
        sides = page.get_by_test_id("compare-side")
        assert sides.nth(0).get_attribute("data-run") == str(second["id"])
        assert sides.nth(1).get_attribute("data-run") == str(first["id"])
        shown = rows(page)
        assert len(shown) >= 8
        assert {r["state"] for r in shown} <= {"same", "timing"}
        assert page.get_by_test_id("first-divergence").count() == 0
        summary = page.get_by_test_id("compare-summary").inner_text()
        assert "The runs follow the same lifecycle" in summary
        # The worker's FAILED commit is one row, the same on both sides
        failed = [r for r in shown if r["text"].count("COMMIT") == r["text"].count("FAILED") == 2]
        assert len(failed) == 1 and failed[0]["state"] == "same"

        # And every step links to its own event on its own run's timeline
        other_side = "[data-testid=compare-row] td:nth-child(3) [data-testid=step-link]"
        link = page.locator(other_side).last
        href = link.get_attribute("href")
        assert re.fullmatch(rf"/runs/{first['id']}#event-\d+", href)
        page.goto(stack.base_url + href)
        # (highlighted by :target, or by the class that keeps it once a live message
        # re-rendered the event)
        target = page.evaluate("document.querySelector(':target, .ev.targeted').dataset.eventId")
        assert href.endswith(f"#event-{target}")
    finally:
        context.close()


def test_the_failing_run_is_compared_with_the_latest_passing_one_at_one_click(stack, page, live_db):
    # Given a passing run of `fails` and one whose FAILED was overwritten with COMPLETED
    passing = finished(stack, start(stack, "fails")["id"])
    failing = overwritten_run(stack)
    assert (failing["verdict"], failing["observed"]) == ("fail", "COMPLETED")

    # When the user opens the failing run: "Compare with…" offers the latest passing run first
    page.goto(failing["url"])
    links = page.get_by_test_id("compare-links").get_by_test_id("compare-link")
    first = links.first
    assert "latest passing run" in first.inner_text()
    assert first.get_attribute("data-run") == str(passing["id"])
    assert 1 <= links.count() <= 10
    offered = [int(x) for x in links.evaluate_all("els => els.map(e => e.dataset.run)")]
    assert failing["id"] not in offered and offered[1:] == sorted(offered[1:], reverse=True)

    # And follows it
    first.click()
    page.wait_for_url(re.compile(rf"/runs/{failing['id']}/compare/{passing['id']}$"))

    # Then the first divergence is the overwrite: a COMPLETED commit only the failing run has
    flag = page.get_by_test_id("first-divergence")
    assert flag.count() == 1 and flag.get_attribute("id") == "diverge"
    step = flag.get_attribute("data-step")
    row = page.locator(f"[data-testid=compare-row][data-step='{step}']")
    assert row.get_attribute("data-state") == "differs"
    this_side, other_side = row.locator("td").nth(0), row.locator("td").nth(1)
    assert "COMMIT" in this_side.inner_text().upper() and "COMPLETED" in this_side.inner_text()
    assert "no such step" in other_side.inner_text()
    summary = page.get_by_test_id("compare-summary").inner_text()
    assert (
        f"The runs diverge at step {step}: run {failing['id']} committed COMPLETED; "
        f"run {passing['id']} has no such step."
    ) in summary
    # Every row before it is the same lifecycle
    before = [r for r in rows(page) if int(r["step"]) < int(step)]
    assert before and {r["state"] for r in before} <= {"same", "timing"}

    # When the user jumps to it, then to the commit on the failing run's timeline
    page.get_by_role("link", name=re.compile(r"Go to step")).click()
    assert page.evaluate("document.querySelector(':target').id") == "diverge"
    this_side.get_by_test_id("step-link").click()
    page.wait_for_url(re.compile(rf"/runs/{failing['id']}#event-\d+$"))
    target = page.evaluate("({...document.querySelector(':target, .ev.targeted').dataset})")
    assert (target["source"], target["status"]) == ("db", "COMPLETED")


def test_runs_of_different_scenarios_or_missing_runs_are_refused(stack, live_db):
    a = finished(stack, start(stack, "fails")["id"])
    b = finished(stack, start(stack, "succeeds")["id"])

    status, body = stack.get(f"/runs/{a['id']}/compare/{b['id']}")
    assert status == 400
    assert f"run {b['id']} a run of succeeds" in body
    assert "only two runs of the same scenario can be compared" in body

    status, _ = stack.get(f"/runs/{a['id']}/compare/{b['id'] + 10_000}")
    assert status == 404
