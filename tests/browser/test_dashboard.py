"""The dashboard as a user sees it, in Chromium, against the live stack."""

from __future__ import annotations

import re

import pytest

from lifecycle.models import Run
from tests.browser.conftest import logged_in_context
from tests.conftest import wait_for

pytestmark = pytest.mark.browser


def event_ids(page) -> list[str]:
    return page.eval_on_selector_all(
        "[data-testid=event]", "els => els.map(e => e.dataset.eventId)"
    )


def rows(page) -> list[tuple[str, str]]:
    """The timeline's rows: each event's id, or a run of reads' first id and count."""
    return [
        tuple(row)
        for row in page.eval_on_selector_all(
            "#timeline-events > li",
            "els => els.map(e => [e.dataset.eventId,"
            " e.querySelector('.run-summary') ? e.querySelector('.run-summary').dataset.count"
            " : '1'])",
        )
    ]


# Reads of one lane, counting each run of identical reads (one row) as its reads.
READS = (
    "(source) => Array.from(document.querySelectorAll("
    "`#timeline-events > li[data-source=${source}][data-kind=read]`)).reduce((n, e) =>"
    " n + Number(e.querySelector('.run-summary') ? e.querySelector('.run-summary').dataset.count"
    " : 1), 0)"
)


def test_run_watch_resubmit_and_share_a_failing_scenario(stack, browser, page, live_db):
    # Given the home page
    page.goto(stack.base_url + "/")
    panel = page.get_by_test_id("scenario-panel")
    assert "fails" in panel.inner_text()

    # When the user runs the `fails` scenario
    page.get_by_test_id("run-fails").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_url = page.url
    page.evaluate("window.__sameDocument = true")

    # Then the worker's FAILED commit appears on the timeline without a reload
    page.wait_for_selector("[data-testid=event][data-source=db][data-status=FAILED]")
    page.wait_for_selector("[data-testid=verdict][data-verdict=pass]")
    assert page.evaluate("window.__sameDocument") is True
    commits = page.eval_on_selector_all(
        "[data-testid=event][data-source=db]", "els => els.map(e => e.dataset.status)"
    )
    assert commits[-1] == "FAILED" and "RUNNING" in commits

    # And a read names the commit whose version it returned
    link = page.locator("[data-testid=version-link]").first
    target = link.get_attribute("href")
    assert page.locator(f"{target}[data-source=db]").count() == 1

    # When the user resubmits it
    page.wait_for_selector("[data-testid=event][data-source=probe][data-kind=verdict]")
    # Every probe read has its API read (those come through the ingestor): all events are in
    page.wait_for_function(f"() => ({READS})('probe') === ({READS})('api')")
    shown = rows(page)
    page.get_by_test_id("resubmit").click()
    page.wait_for_url(lambda url: url != run_url and "/runs/" in url)
    new_run = Run.objects.get(pk=int(page.url.rsplit("/", 1)[1]))
    assert new_run.resubmit_of_id == int(run_url.rsplit("/", 1)[1])
    assert (
        page.get_by_test_id("resubmit-of").get_attribute("href").endswith(run_url.rsplit("/", 1)[1])
    )

    # And someone else, logged in through the login page, opens the first run's permalink:
    # the same events, server-rendered
    other = logged_in_context(browser, stack, through_form=True)
    try:
        other_page = other.new_page()
        other_page.goto(run_url)
        assert rows(other_page) == shown  # the live page folded its reads as the page does
        assert other_page.get_by_test_id("resubmitted-as").count() == 1
    finally:
        other.close()


def test_a_permalink_reads_without_javascript_and_highlights_its_event(stack, browser, live_db):
    status, run = stack.post("/api/scenarios/fails/runs")
    assert status == 201
    from tests.conftest import wait_for

    wait_for(lambda: stack.get(f"/api/runs/{run['id']}")[1]["state"] == "done", 30)

    def settled():
        # Every probe read was served by the API, whose read events come through the
        # ingestor: once each probe read has its API read, no event is still on its way.
        _, body = stack.get(f"/api/tasks/{run['task']}/timeline")
        count = {
            s: sum(e["source"] == s and e["kind"] == "read" for e in body["events"])
            for s in ("probe", "api")
        }
        return body if count["probe"] == count["api"] else None

    timeline = wait_for(settled, 10, 0.2, "the API reads to be ingested")
    failed = next(e for e in timeline["events"] if e["source"] == "db" and e["status"] == "FAILED")

    context = logged_in_context(browser, stack, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{run['url']}#event-{failed['id']}")
        assert page.get_by_test_id("verdict").get_attribute("data-verdict") == "pass"
        # The same events, in the same order, as the timeline's JSON (a run of identical
        # reads is one row that counts them, starting at its first)
        shown = rows(page)
        ids = [str(e["id"]) for e in timeline["events"]]
        assert sum(int(count) for _, count in shown) == len(ids)
        firsts = [event for event, _ in shown]
        assert firsts == [i for i in ids if i in set(firsts)]
        # The fragment's event is the :target, which the stylesheet highlights
        assert page.evaluate("document.querySelector(':target').id") == f"event-{failed['id']}"
    finally:
        context.close()


def test_a_double_click_on_run_starts_one_run(stack, page, live_db):
    before = Run.objects.filter(scenario="succeeds").count()
    page.goto(stack.base_url + "/")
    page.get_by_test_id("run-succeeds").dblclick()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.wait_for_timeout(500)
    assert Run.objects.filter(scenario="succeeds").count() == before + 1


def test_the_home_page_shows_new_tasks_live(stack, page, live_db):
    page.goto(stack.base_url + "/")
    page.wait_for_selector("[data-testid=live-state][data-state=open]")
    status, run = stack.post("/api/scenarios/succeeds/runs")
    assert status == 201
    row = page.locator(f"#task-{run['task']}")
    row.wait_for()
    assert page.locator("[data-testid=task-row]").first.get_attribute("data-task") == run["task"]
    page.wait_for_selector(f"#task-{run['task']} [data-status=COMPLETED]")


def test_a_session_past_its_cap_of_live_pages_is_told_so(stack, page):
    from django.conf import settings

    # Given one session with as many live pages open as a session may hold
    cap = settings.LIFECYCLE_WS_PER_SESSION
    pages = [page, *(page.context.new_page() for _ in range(cap - 1))]
    for open_page in pages:
        open_page.goto(stack.base_url + "/")
        open_page.wait_for_selector("[data-testid=live-state][data-state=open]")

    # When it opens one more
    extra = page.context.new_page()
    extra.goto(stack.base_url + "/")

    # Then that page says it is not live, and why
    state = extra.locator("[data-testid=live-state][data-state=refused]")
    state.wait_for(timeout=10_000)
    assert "too many live pages open" in state.inner_text()

    # And once another page is closed, a reload goes live
    pages.pop().close()

    def live_after_reload() -> bool:
        extra.reload()
        live = extra.locator("[data-testid=live-state]")
        extra.wait_for_selector("[data-testid=live-state][data-state]")
        extra.wait_for_timeout(1000)  # a refused socket opens, then closes at once
        return live.get_attribute("data-state") == "open"

    wait_for(live_after_reload, 15, 0.5, "a live page after closing one")
