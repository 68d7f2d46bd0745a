"""A live page whose session ends says so, in Chromium, against the live stack."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_a_live_page_says_signed_out_when_its_session_logs_out(stack, page):
    # Given a live page, and another page of the same session
    page.goto(stack.base_url + "/")
    page.wait_for_selector("[data-testid=live-state][data-state=open]")
    other = page.context.new_page()
    other.goto(stack.base_url + "/")

    # When the reader logs out on the other page
    other.get_by_test_id("logout").click()
    other.wait_for_url("**/login")

    # Then the live page says it is not live any more, and why, and does not reconnect
    state = page.locator("[data-testid=live-state][data-state=signed-out]")
    state.wait_for(timeout=5_000)
    assert state.inner_text() == "○ not live: signed out; sign in again"
    page.wait_for_timeout(2_000)
    assert state.is_visible()
