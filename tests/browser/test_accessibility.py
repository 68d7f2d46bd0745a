"""Every page axe-core clean for WCAG 2.1 A and AA, in Chromium, logged in, on real runs.

Each test fails on any violation and prints them (rule, impact, elements, why): see
``tests/browser/axe.py`` for how the engine gets into a page whose policy allows only
its own scripts.
"""

from __future__ import annotations

import uuid

import pytest

from tests.browser.axe import assert_clean
from tests.browser.conftest import FLAGS, log_in  # noqa: F401 - FLAGS documents the launch
from tests.browser.test_compare import finished, overwritten_run, start
from tests.histories import stored_long_task

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def long_key(stack) -> str:
    return stored_long_task("a11y-long", 5000)


def ready(page) -> None:
    """The page as a reader meets it: scripts run, and a live page connected."""
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.htmx !== undefined")
    if page.locator("[data-live]").count():
        page.locator("[data-testid=live-state][data-state=open]").wait_for()


def test_home_with_its_search_and_import_form(stack, page, swallowed):
    page.goto(stack.base_url + "/")
    ready(page)
    page.get_by_test_id("import-form").wait_for()
    assert_clean(page)
    # and a search that came back with an error, its filters kept
    page.goto(stack.base_url + "/?since=yesterday&findings=any")
    page.get_by_test_id("search-errors").wait_for()
    assert_clean(page)


def test_the_run_page(stack, page, swallowed):
    page.goto(f"{stack.base_url}/runs/{swallowed['id']}")
    ready(page)
    page.locator("[data-testid=finding]").first.wait_for()
    assert_clean(page)
    # with an event's fields open, as hover or focus shows them
    page.locator(".ev-card").first.hover()
    assert_clean(page)


def test_a_short_task_page(stack, page, swallowed):
    page.goto(f"{stack.base_url}/tasks/{swallowed['task']}")
    ready(page)
    page.get_by_test_id("swimlane").wait_for()
    assert_clean(page)


def test_a_long_windowed_task_page(stack, page, long_key):
    page.goto(f"{stack.base_url}/tasks/{long_key}")
    ready(page)
    page.get_by_test_id("outline").wait_for()
    assert_clean(page)


def test_the_scenario_page(stack, page, swallowed):
    page.goto(f"{stack.base_url}/scenarios/swallowed-error")
    ready(page)
    assert_clean(page)


def test_the_compare_page(stack, page, live_db):
    clean = finished(stack, start(stack, "fails")["id"])
    late = overwritten_run(stack)
    page.goto(f"{stack.base_url}/runs/{clean['id']}/compare/{late['id']}")
    ready(page)
    page.get_by_test_id("first-divergence").wait_for()
    assert_clean(page)
    # and the page that says two runs cannot be compared
    other = finished(stack, start(stack, "succeeds")["id"])
    page.goto(f"{stack.base_url}/runs/{clean['id']}/compare/{other['id']}")
    page.get_by_test_id("compare-error").wait_for()
    assert_clean(page)


def test_the_login_page(stack, browser):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(stack.base_url + "/login")
        assert_clean(page)
        page.fill("#id_username", "nobody")
        page.fill("#id_password", "wrong")
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("login-error").wait_for()
        assert_clean(page)
    finally:
        context.close()


def test_the_status_pages(stack, page):
    """What the server answers when it cannot show the page: a page when a person asked
    for one, a sentence of plain text when lifecycle.js asked for rows."""
    for path in ("/runs/987654321", "/scenarios/no-such-scenario", "/tasks/no-such-task"):
        response = page.goto(stack.base_url + path)
        assert response.status == 404, path
        assert_clean(page)
    for path in ("/windows/x?after=bad", "/reads/x?first=a", "/commits/x?after=bad"):
        response = page.goto(stack.base_url + path)
        assert response.status == 400, path
        assert response.headers["content-type"].startswith("text/plain"), path


@pytest.fixture(scope="module")
def maintainer(stack) -> tuple[str, str]:
    name = f"a11y-{uuid.uuid4().hex[:8]}"
    made = stack.manage("lifecycle", "user", "add", name, "--role", "maintainer")
    assert made.returncode == 0, made.stderr
    return name, made.stdout.strip()


def test_the_admin_pages(stack, browser, maintainer, swallowed):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(stack.base_url + "/admin/login/")
        assert_clean(page)
        page.fill("#id_username", maintainer[0])
        page.fill("#id_password", maintainer[1])
        page.locator("input[type=submit]").click()
        page.wait_for_url("**/admin/")
        for path in ("/admin/", "/admin/lifecycle/run/", "/admin/lifecycle/event/"):
            page.goto(stack.base_url + path)
            assert_clean(page)
        page.goto(f"{stack.base_url}/admin/lifecycle/run/{swallowed['id']}/change/")
        assert_clean(page)
    finally:
        context.close()


def test_the_deployment_status_page(stack, browser, maintainer):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(stack.base_url + "/login")
        page.fill("#id_username", maintainer[0])
        page.fill("#id_password", maintainer[1])
        page.get_by_test_id("login-submit").click()
        page.wait_for_selector("[data-testid=logout]")
        # the header links it for a maintainer
        page.get_by_test_id("status-link").click()
        page.wait_for_url("**/status")
        ready(page)
        page.get_by_test_id("holder-follow").wait_for()
        assert "holds it" not in page.get_by_test_id("holder-follow").inner_text()
        page.screenshot(path="/tmp/h21-status-page.png", full_page=True)
        assert_clean(page)
    finally:
        context.close()
