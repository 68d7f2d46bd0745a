"""A long task's page and folded reads, as a user meets them in Chromium: the outline, a
link into a window not loaded, a run of reads opening in place and growing live."""

from __future__ import annotations

import uuid

import pytest

from lifecycle.models import Event
from tests.conftest import wait_for
from tests.histories import stored_long_task

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def long_task(stack) -> str:
    return stored_long_task("long", 5000)


def test_a_long_task_opens_with_its_outline_and_a_link_reaches_any_event(
    stack, page, long_task, live_db
):
    # Given a task of 5,000 events
    page.goto(f"{stack.base_url}/tasks/{long_task}")
    assert page.get_by_test_id("outline").is_visible()
    windows = page.get_by_test_id("window").count()
    assert windows > 0
    assert page.locator("[data-testid=event], [data-testid=read-run]").count() <= 500

    # When a link points at an event in the middle, which the page does not show
    ids = sorted(
        Event.objects.filter(task_key=long_task, source="probe").values_list("id", flat=True)
    )
    middle = ids[len(ids) // 2]
    assert page.locator(f"#event-{middle}").count() == 0
    page.evaluate(f"location.hash = '#event-{middle}'")

    # Then its window loads (and its run of reads opens) and it is in view, highlighted
    target = page.locator(f"#event-{middle}")
    target.wait_for(state="visible")
    wait_for(lambda: "targeted" in (target.get_attribute("class") or ""), 5, what="highlight")
    assert target.is_visible()
    assert page.get_by_test_id("window").count() < windows + 2  # one loaded, maybe split

    # And a status change of the outline is one click away too
    link = page.locator("[data-testid=outline-commits] > li > a").nth(3)
    href = link.get_attribute("href")
    link.click()
    page.locator(str(href)).wait_for(state="visible")


def test_scrolling_a_long_timeline_loads_its_windows(stack, page, long_task):
    page.goto(f"{stack.base_url}/tasks/{long_task}")
    first = page.get_by_test_id("window").first
    before = page.get_by_test_id("window").count()
    first.scroll_into_view_if_needed()
    wait_for(
        lambda: (
            page.get_by_test_id("window").count() != before
            or page.locator("li.window.loading").count() == 0
            and first.count() == 0
        ),
        10,
        what="a window to load",
    )
    assert page.locator("[data-testid=event], [data-testid=read-run]").count() > 500


def test_a_run_of_reads_opens_in_place_and_grows_live(stack, page, live_db):
    # Given a task whose API read the same status twice
    task = f"runs-{uuid.uuid4()}"
    reads = [
        Event.objects.create(
            task_key=task, source="api", kind="read", status="RUNNING", body={"client": "web"}
        )
        for _ in range(2)
    ]
    page.goto(f"{stack.base_url}/tasks/{task}")
    run = page.locator(f"#run-{reads[0].id}")
    assert run.get_by_test_id("run-summary").get_attribute("data-count") == "2"
    assert page.get_by_test_id("event").count() == 0

    # When it is opened, its reads are listed in place
    run.get_by_test_id("run-toggle").click()
    rows = run.locator(".run-events [data-testid=event]")
    rows.first.wait_for()
    assert rows.count() == 2

    # When the same read comes live, the run counts it and lists it: no new row
    page.locator("[data-testid=live-state][data-state=open]").wait_for()
    Event.objects.create(
        task_key=task, source="api", kind="read", status="RUNNING", body={"client": "web"}
    )
    wait_for(
        lambda: run.get_by_test_id("run-summary").get_attribute("data-count") == "3",
        10,
        what="the run to grow",
    )
    assert rows.count() == 3
    assert page.locator("#timeline-events > li").count() == 1
