"""The swimlane picture and the home page's search, as a user meets them in Chromium."""

from __future__ import annotations

import re

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.browser


def test_the_swimlane_shows_an_event_on_focus_and_leads_to_its_row(stack, page, overwritten):
    page.goto(f"{stack.base_url}/tasks/{overwritten['task']}")
    picture = page.get_by_test_id("swimlane")
    picture.wait_for()

    # Commits are drawn with their statuses; the ones that prove a finding are ringed
    assert picture.locator("path").count() >= 3
    assert picture.locator(".proves").count() >= 2

    # Focusing a mark (Tab) writes its event under the lanes
    mark = picture.locator("a.mark:has(path)").first
    mark.focus()
    tip = mark.locator(".tip")
    assert tip.evaluate("el => getComputedStyle(el).visibility") == "visible"
    assert re.match(r"#\d+ ", tip.text_content() or "")

    # and following it lands on the event's row
    href = mark.get_attribute("href")
    mark.locator("path").click()
    page.wait_for_url(re.compile(re.escape(href) + "$"))
    assert page.locator(f"{href}[data-testid=event]").count() == 1


def test_the_search_finds_a_scenarios_failed_runs_and_counts_them(stack, page, overwritten):
    page.goto(stack.base_url + "/")
    page.get_by_test_id("filter-verdict").select_option("fail")
    page.wait_for_url(re.compile(r"verdict=fail"))

    # The scenario filter now lists the failed runs' scenarios with their counts
    options = page.get_by_test_id("filter-scenario").locator("option").all_inner_texts()
    assert any(o.startswith("overwrite-after-failure (") for o in options), options
    page.get_by_test_id("filter-scenario").select_option("overwrite-after-failure")
    page.wait_for_url(re.compile(r"scenario=overwrite-after-failure"))

    def listed() -> bool:
        if page.locator(f"#task-{overwritten['task']}").count():
            return True
        page.reload()  # the maintainer stores a task's row moments after its events
        return False

    wait_for(listed, 10)
    rows = page.get_by_test_id("task-row")
    for i in range(rows.count()):
        assert "fail" in rows.nth(i).inner_text()
