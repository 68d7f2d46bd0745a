"""The timeline by keyboard and by screen reader, in Chromium: Tab reaches every row, run
of reads, finding link and swimlane mark; Enter does what a click does; focus is visible;
the picture has a name and a text alternative; chips say their role; a live page
announces findings and the verdict, not each read."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import caught_up
from tests.histories import stored_long_task

pytestmark = pytest.mark.browser

ROWS = "#timeline-events > li > a.ev-time"
FINDING_LINKS = "[data-testid=finding] a"
MARKS = "[data-testid=swimlane] a.mark"
TOGGLES = "#timeline-events .run-toggle"


def tab_through(page, wanted: list[str], limit: int = 1500) -> dict[str, int]:
    """Press Tab from the top of the page until every element of ``wanted`` has had the
    focus (or ``limit`` presses); how many of each were never reached."""
    page.evaluate(
        "() => { window.__seen = new Set();"
        " document.addEventListener('focusin', e => window.__seen.add(e.target)); }"
    )
    missing = """sels => Object.fromEntries(sels.map(s => [s,
        [...document.querySelectorAll(s)].filter(el => !window.__seen.has(el)).length]))"""
    for n in range(limit):
        page.keyboard.press("Tab")
        if n % 25 == 24 and not any(page.evaluate(missing, wanted).values()):
            break
    return page.evaluate(missing, wanted)


def focused(page) -> str:
    return page.evaluate(
        "() => { const el = document.activeElement, row = el && el.closest('li[id]');"
        " return (row ? row.id : '') + ' ' + el.tagName.toLowerCase() + '.' +"
        " (el.getAttribute('class') || ''); }"
    )


def outline_of(page) -> tuple[str, float]:
    return tuple(
        page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
        )
    )


def test_tab_reaches_every_row_run_of_reads_finding_link_and_mark(stack, page, swallowed):
    page.goto(f"{stack.base_url}/runs/{swallowed['id']}")
    caught_up(page)
    page.get_by_test_id("swimlane").wait_for()
    counts = {s: page.locator(s).count() for s in (ROWS, FINDING_LINKS, MARKS, TOGGLES)}
    assert counts[ROWS] > 10 and counts[FINDING_LINKS] and counts[MARKS] > 5, counts
    assert page.get_by_test_id("read-run").count(), "a run of reads to reach"

    assert tab_through(page, list(counts)) == dict.fromkeys(counts, 0)


def test_focus_is_visible_and_enter_opens_what_a_click_opens(stack, page, swallowed):
    page.goto(f"{stack.base_url}/tasks/{swallowed['task']}")
    caught_up(page)
    page.get_by_test_id("swimlane").wait_for()

    # A swimlane mark: focused, it is ringed and its event written under the lanes;
    # Enter goes to its row, and the row takes the focus
    mark = page.locator(f"{MARKS}:has(path)").first
    href = mark.get_attribute("href")
    page.keyboard.press("Tab")  # keyboard use: what is focused next shows it
    mark.focus()
    assert mark.locator(".tip").evaluate("el => getComputedStyle(el).visibility") == "visible"
    ring = mark.locator("path").evaluate("el => parseFloat(getComputedStyle(el).strokeWidth)")
    assert ring >= 3
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(href) + "$"))
    page.wait_for_function(
        "id => document.activeElement.closest('li') && "
        "document.activeElement.closest('li').id === id",
        arg=href[1:],
    )
    assert focused(page).startswith(f"{href[1:]} a.ev-time")

    # A row's time: focused, it is ringed and shows the row's fields; Enter makes it the
    # permalink, highlighted, as a click does
    row = page.locator(ROWS).nth(2)
    row.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    style, width = outline_of(page)
    assert style != "none" and width >= 2
    fields = row.locator("xpath=following-sibling::div[1]//dl[contains(@class,'ev-fields')]")
    fields.wait_for(state="visible")
    described = row.get_attribute("aria-describedby") or ""
    assert fields.get_attribute("id") in described.split()
    page.keyboard.press("Escape")  # the fields hide, the focus stays
    fields.wait_for(state="hidden")
    assert page.evaluate("el => document.activeElement === el", row.element_handle())
    page.keyboard.press("Enter")
    event_id = row.get_attribute("href")
    page.wait_for_url(re.compile(re.escape(event_id) + "$"))
    page.wait_for_function(  # lifecycle.js marks it on the hashchange that follows
        "id => document.querySelector(id).classList.contains('targeted')", arg=event_id
    )

    # A run of reads: Enter on its toggle opens it in place, as a click does
    toggle = page.locator(TOGGLES).first
    toggle.focus()
    page.keyboard.press("Enter")
    assert toggle.get_attribute("aria-expanded") == "true"
    run = page.locator("[data-testid=read-run]").first
    run.locator(".run-events [data-testid=event]").first.wait_for()


def enter_moves_the_focus_to_its_event(page, link) -> str:
    """Enter on a link to an event; waits for that event's time to take the focus and
    returns the event's id."""
    target = link.get_attribute("href")[1:]
    link.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "id => { const row = document.activeElement.closest('li');"
        " return row && row.id === id && document.activeElement.matches('a.ev-time'); }",
        arg=target,
    )
    return target


def test_a_findings_proved_by_links_move_focus_to_their_events(stack, page, swallowed):
    page.goto(f"{stack.base_url}/runs/{swallowed['id']}")
    caught_up(page)
    links = page.locator("[data-testid=finding] .proof a")
    assert links.count() >= 2
    for i in (0, 1, 0):  # the same link twice: the address does not change the second time
        target = enter_moves_the_focus_to_its_event(page, links.nth(i))
        # and Tab goes on from the event, not from the finding
        page.keyboard.press("Tab")
        assert page.evaluate(
            "id => document.getElementById(id).compareDocumentPosition(document.activeElement)"
            " & Node.DOCUMENT_POSITION_FOLLOWING || document.getElementById(id)"
            ".contains(document.activeElement)",
            target,
        )


def test_the_swimlane_and_chips_say_what_they_show(stack, page, swallowed):
    page.goto(f"{stack.base_url}/runs/{swallowed['id']}")
    caught_up(page)
    # The picture is a group with a name, described by the history in words
    picture = page.get_by_role("group", name=re.compile(r"^Swimlane of \d+ events"))
    assert picture.count() == 1
    words = page.locator("#" + picture.get_attribute("aria-describedby")).inner_text()
    assert re.search(r"\d+ events: \d+ probe reads, .*\d+ commits", words), words
    assert re.search(r"\d+ attempts?: attempt 1 ended ack", words), words
    assert "Status: PENDING → RUNNING → COMPLETED." in words, words

    # A status chip reads as its status and its role; a verdict chip as the verdict
    verdict = page.get_by_test_id("verdict")
    snapshot = verdict.aria_snapshot()
    assert "verdict: fail" in snapshot, snapshot
    assert "FAILED (failure)" in snapshot and "COMPLETED (success)" in snapshot, snapshot
    assert "✕" not in snapshot  # the shapes are for the eye


def test_a_live_run_announces_its_findings_and_verdict_not_its_reads(stack, page):
    page.goto(stack.base_url + "/")
    page.get_by_test_id("run-swallowed-error").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    page.wait_for_selector("[data-testid=verdict][data-verdict=fail]")
    page.locator("[data-testid=finding][data-kind=expectation_mismatch]").wait_for()

    region = page.get_by_test_id("announcer")
    assert region.get_attribute("aria-live") == "polite"
    page.wait_for_function(
        "() => /Verdict: fail/.test(document.getElementById('announcer').textContent)"
    )
    page.wait_for_function(
        "() => /New finding: expectation mismatch/"
        ".test(document.getElementById('announcer').textContent)"
    )
    said = region.locator("p").all_inner_texts()
    assert all(re.match(r"^(New finding: |Verdict: )", s) for s in said), said
    assert "Verdict: fail: expected FAILED, observed COMPLETED." in " ".join(said), said
    # the polls' reads (dozens) came live too, and none was announced
    assert page.locator("[data-source=probe]").count() > 2
    assert len(said) <= 3, said


def test_enter_on_a_link_into_an_unloaded_window_moves_focus_to_its_event(stack, page):
    # Given a long task, whose outline links to commits in windows not loaded yet
    key = stored_long_task("keys-long", 5000)
    page.goto(f"{stack.base_url}/tasks/{key}")
    links = page.locator("[data-testid=outline-commits] > li > a")
    link = next(
        links.nth(i)
        for i in range(links.count())
        if not page.locator(links.nth(i).get_attribute("href")).count()
    )

    # When the reader presses Enter on it, its window loads and the event takes the focus
    enter_moves_the_focus_to_its_event(page, link)
