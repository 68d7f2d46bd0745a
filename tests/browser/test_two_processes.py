"""Several dashboard processes behind a load balancer: each pushes every event to its clients."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from lifecycle.models import Event
from tests.browser.conftest import logged_in_context
from tests.conftest import ROOT, free_port, http, wait_for

pytestmark = pytest.mark.browser


class Web:
    """One more dashboard process (daphne) on its own port, which a test can restart."""

    def __init__(self, env: dict[str, str], token: str) -> None:
        self.token = token
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port), "LIFECYCLE_PROCESS_ROLE": "web"}
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "dashboard.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.up, 20, 0.2, "the web process")

    def up(self) -> bool:
        try:
            return http("GET", self.url + "/api/scenarios", token=self.token)[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # a crash, as far as its websocket clients can tell
            self.process.wait(10)


@pytest.fixture
def second_web(stack):
    web = Web(stack.env, stack.token)
    web.start()
    try:
        yield web
    finally:
        web.stop()


def shown(page) -> set[str]:
    return set(
        page.eval_on_selector_all("[data-testid=event]", "els => els.map(e => e.dataset.eventId)")
    )


def test_two_dashboard_processes_both_push_every_event(stack, second_web, browser, live_db):
    # Given a task and one viewer on each of two dashboard processes
    task = f"two-web-{uuid.uuid4()}"
    Event.objects.create(task_key=task, source="api", kind="read", status="PENDING")
    pages = []
    for base in (stack.base_url, second_web.url):
        page = logged_in_context(browser, stack).new_page()
        page.goto(f"{base}/tasks/{task}")
        page.wait_for_selector("[data-testid=live-state][data-state=open]")
        pages.append(page)

    # When events commit
    # (each from a client of its own: identical reads of one client fold into one row)
    ids = {
        str(
            Event.objects.create(
                task_key=task, source="api", kind="read", status="RUNNING", body={"client": n}
            ).id
        )
        for n in range(5)
    }

    # Then both pages show every one of them, once
    for page in pages:
        page.wait_for_function(
            "ids => ids.every(id => document.getElementById('event-' + id))", arg=sorted(ids)
        )
        count = page.locator("[data-testid=event]").count()
        assert count == len(shown(page)) == 6
        page.close()


def test_a_dropped_websocket_reconnects_and_catches_up_exactly(stack, second_web, browser, live_db):
    # Given a viewer of a task, live through a dashboard process
    task = f"reconnect-{uuid.uuid4()}"
    first = Event.objects.create(task_key=task, source="api", kind="read", status="PENDING")
    page = logged_in_context(browser, stack).new_page()
    page.goto(f"{second_web.url}/tasks/{task}")
    page.wait_for_selector("[data-testid=live-state][data-state=open]")
    page.evaluate("window.__sameDocument = true")
    before = Event.objects.create(task_key=task, source="api", kind="read", status="RUNNING")
    page.wait_for_selector(f"#event-{before.id}")

    # When the process dies, events commit meanwhile, and it comes back
    second_web.stop()
    page.wait_for_selector("[data-testid=live-state][data-state=closed]")
    missed = [
        Event.objects.create(
            task_key=task, source="api", kind="read", status="RUNNING", body={"client": n}
        ).id
        for n in range(3)
    ]
    second_web.start()

    # Then the page reconnects by itself and shows every event exactly once
    page.wait_for_selector("[data-testid=live-state][data-state=open]", timeout=40_000)
    for event_id in missed:
        page.wait_for_selector(f"#event-{event_id}")
    ids = page.eval_on_selector_all("[data-testid=event]", "els => els.map(e => e.dataset.eventId)")
    assert sorted(map(int, ids)) == sorted([first.id, before.id, *missed])
    assert page.evaluate("window.__sameDocument") is True
    page.close()
