"""A foreign service's scenario in the browser: its group in the panel, Run, and its
findings appearing live on the run page; then Edit and run with a bad body, and a good one."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.browser


def test_run_a_foreign_scenario_from_the_panel_and_watch_its_finding_appear(
    stack, service, page, live_db
):
    # Given the home page, whose panel holds the service's scenarios under its title
    page.goto(stack.base_url + "/")
    panel = page.get_by_test_id("scenario-panel")
    groups = panel.get_by_test_id("scenario-group").all_text_contents()
    assert groups == ["The lab", "Jobs service", "Tasks service (async)", "Jobs service (Django)"]

    # When the user clicks Run on its swallowed-error scenario
    page.get_by_test_id("run-jobs-swallowed-error").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.evaluate("window.__sameDocument = true")

    # Then the job's commit of done, in its own lifecycle's colours, arrives live
    commit = page.locator("[data-testid=event][data-source=db][data-status=done]")
    commit.wait_for()
    # And the findings appear without a reload: the swallowed error and the expectation
    swallowed = page.locator("[data-testid=finding][data-kind=swallowed_error]")
    swallowed.wait_for(timeout=30_000)
    assert "LLM call failed" in swallowed.inner_text()
    mismatch = page.locator("[data-testid=finding][data-kind=expectation_mismatch]")
    mismatch.wait_for()
    assert mismatch.get_attribute("data-cause") == "committed"
    page.wait_for_selector("[data-testid=verdict][data-verdict=fail]")
    assert page.evaluate("window.__sameDocument") is True
    chip = page.locator("[data-testid=verdict] .chip[data-status=errored]")
    assert chip.get_attribute("data-role") == "failure"
    assert json.loads(page.get_by_test_id("body-shown").inner_text()) == {"mode": "swallowed_error"}
    run_url = page.url

    # When the user edits the body into something that is not JSON and runs it
    page.reload()  # the editor is offered once the run is done
    page.locator("details.edit-run summary").click()
    page.get_by_test_id("edit-body").fill('{"mode": ok}')
    page.get_by_test_id("edit-run").click()
    # Then nothing starts: the editor comes back with the reason and the text as typed
    error = page.get_by_test_id("edit-error")
    error.wait_for()
    assert "not JSON" in error.inner_text() and "line 1, column 10" in error.inner_text()
    assert page.get_by_test_id("edit-body").input_value() == '{"mode": ok}'

    # When the body is corrected to the clean mode and run
    page.get_by_test_id("edit-body").fill('{"mode": "ok"}')
    page.get_by_test_id("edit-run").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    # Then a new run, linked to the first, runs that body: the job is done, as the clean mode
    # does, which is not the errored this scenario expects
    assert page.url != run_url
    assert page.get_by_test_id("resubmit-of").get_attribute("href") in run_url
    assert page.get_by_test_id("edited").is_visible()
    assert json.loads(page.get_by_test_id("body-shown").inner_text()) == {"mode": "ok"}
    page.wait_for_selector("[data-testid=verdict][data-verdict=fail]", timeout=30_000)
    observed = page.locator("[data-testid=verdict] .chip[data-role=success]")
    assert observed.first.get_attribute("data-status") == "done"
