"""Playwright driving Debian's Chromium (never a downloaded browser)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import skip_or_fail

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


# One Chromium for the browser tests, closed after the last of them (package scope, not
# session): Playwright's sync API keeps an event loop running in this thread while it is
# open, which would break the asyncio tests that run after the browser tests.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed: pip install playwright")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


# Runs several modules look at, made once: none of them changes its run.
@pytest.fixture(scope="package")
def swallowed(stack: Any) -> dict[str, Any]:
    """A failing run whose checker names a swallowed error and a mismatch."""
    from tests.browser.test_compare import finished, start

    return dict(finished(stack, start(stack, "swallowed-error")["id"]))


@pytest.fixture(scope="package")
def overwritten(stack: Any) -> dict[str, Any]:
    """A done run of ``overwrite-after-failure`` (FAILED committed, then COMPLETED over it)."""
    from tests.conftest import wait_for

    status, run = stack.post("/api/scenarios/overwrite-after-failure/runs")
    assert status == 201
    wait_for(lambda: stack.get(f"/api/runs/{run['id']}")[1]["state"] == "done", 30)
    return dict(run)


def log_in(page: Any, stack: Any) -> None:
    """Through the login page, as the stack's runner account."""
    page.goto(stack.base_url + "/login")
    page.fill("#id_username", stack.account[0])
    page.fill("#id_password", stack.account[1])
    page.get_by_test_id("login-submit").click()
    page.wait_for_selector("[data-testid=logout]")


# Makes a new session of a user in the test database (set for the package below).
_new_session: Callable[[str], str] | None = None


@pytest.fixture(scope="package", autouse=True)
def _sessions(django_db_blocker: Any) -> Iterator[None]:
    global _new_session

    def new_session(username: str) -> str:
        """A new logged-in session of ``username``, as the login form makes one (its
        cookie's value): Django's own ``force_login``, without the form's page loads and
        password hash (tests/browser/test_dashboard.py logs in through the form)."""
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.test import Client

        with django_db_blocker.unblock():
            client = Client()
            client.force_login(get_user_model().objects.get(username=username))
            return str(client.cookies[settings.SESSION_COOKIE_NAME].value)

    _new_session = new_session
    yield
    _new_session = None


def logged_in_context(
    browser: Any, stack: Any, *, through_form: bool = False, **options: Any
) -> Any:
    """A browser context with a new session of the runner's (cookies are per host, not per
    port: the session also reaches other dashboard processes on 127.0.0.1); made through
    the login page with ``through_form``."""
    from django.conf import settings

    context = browser.new_context(**options)
    if through_form or _new_session is None:
        page = context.new_page()
        log_in(page, stack)
        page.close()
    else:
        cookie = {"name": settings.SESSION_COOKIE_NAME, "value": _new_session(stack.account[0])}
        context.add_cookies([{**cookie, "url": stack.base_url}])
    return context


@pytest.fixture
def page(browser: Any, stack: Any) -> Iterator[Any]:
    context = logged_in_context(browser, stack, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    # Messages a live page received over its websocket: ``caught_up`` waits for the first
    page.add_init_script(
        "window.__liveMessages = 0; document.addEventListener('htmx:wsAfterMessage',"
        " function () { window.__liveMessages += 1; });"
    )
    yield page
    context.close()


def caught_up(page: Any) -> None:
    """A live page as a reader meets it once settled: its socket open and the server's
    answer to its hello applied (that answer may replace rows a test is about to focus)."""
    page.wait_for_function("() => window.htmx !== undefined")
    page.locator("[data-testid=live-state][data-state=open]").wait_for()
    page.wait_for_function("() => window.__liveMessages > 0")


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls in these tests
    # are plain synchronous reads of the test database, which Django would otherwise refuse.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    yield
    # Opened inside Playwright's context, this connection is not one pytest-django closes.
    from django.db import connections

    connections.close_all()
