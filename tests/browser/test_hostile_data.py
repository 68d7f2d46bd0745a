"""What an observed system sends is text, never markup, on every page and in every live
fragment: keys, statuses, changed values, log text, body fields."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from lifecycle.models import Event

pytestmark = pytest.mark.browser

MARKUP = '"><img src=x class=pwned onerror="window.__pwned=1"><b class=pwned x="'


def hostile_history(key: str) -> None:
    Event.objects.create(
        task_key=key,
        source="db",
        kind="update",
        status=("RUNNING" + MARKUP)[:64],
        txid=1,
        body={
            "table": "public.t" + MARKUP,
            "old_status": MARKUP,
            "new_status": MARKUP,
            "changed": ["state" + MARKUP],
            "values": {"state" + MARKUP: MARKUP},
            "application_name": MARKUP,
        },
    )
    Event.objects.create(
        task_key=key,
        source="log",
        kind="error",
        body={"logger": MARKUP, "message": MARKUP, "exception": "Traceback" + MARKUP},
    )
    Event.objects.create(
        task_key=key, source="api", kind="read", status=MARKUP[:64], body={"client": MARKUP}
    )


def injected(page) -> int:
    return page.evaluate("document.querySelectorAll('.pwned, img[src=\"x\"]').length")


def test_hostile_data_stays_text_on_pages_and_in_live_fragments(stack, page, live_db):
    key = f"q{uuid.uuid4().hex[:6]}" + MARKUP
    # Given the home page and the task's page open, live
    page.goto(stack.base_url + "/")
    page.wait_for_selector("[data-testid=live-state][data-state=open]")
    # When the hostile task's events arrive while the home page watches
    hostile_history(key)
    page.wait_for_function(
        "key => [...document.querySelectorAll('[data-testid=task-row]')]"
        ".some(r => r.textContent.includes(key.slice(0, 7)))",
        arg=key,
    )
    # Then its row shows the key as text, and nothing of it became an element
    assert injected(page) == 0
    assert page.evaluate("window.__pwned") is None

    # And its own page, rendered on the server and then live, too
    first = Event.objects.filter(task_key=key).order_by("id").first()
    assert first is not None
    page.goto(stack.base_url + reverse("dashboard:task", args=[key]))
    page.wait_for_selector(f"#event-{first.id}")
    assert injected(page) == 0
    hostile_history(key)  # three more, pushed live
    page.wait_for_function("() => document.querySelectorAll('[data-testid=event]').length >= 6")
    page.hover(f"#event-{first.id}")  # the popover with every field
    assert injected(page) == 0
    assert page.evaluate("window.__pwned") is None
    assert MARKUP in page.locator("[data-testid=timeline]").inner_text()
