"""The one place a timeline event, a chip and a finding become HTML: everything that came
from an observed system is escaped, and ids are those the live fragments aim at."""

from __future__ import annotations

import os
from datetime import timedelta
from html import escape

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django.setup()

from dashboard import dom, fragments  # noqa: E402
from dashboard.render import event_html, finding_views, linked_message, status_chip  # noqa: E402
from lifecycle.check.rules import Finding  # noqa: E402
from lifecycle.events import EventRecord  # noqa: E402
from lifecycle.store.eventlog import TaskSummary  # noqa: E402
from lifecycle.timeline.layout import TimelineBuilder  # noqa: E402
from tests.histories import T0, event  # noqa: E402

pytestmark = pytest.mark.unit

HOSTILE = '"><img src=x onerror=alert(1)>'


def view(record: EventRecord):  # type: ignore[no-untyped-def]
    return TimelineBuilder().extend([record])[0]


def test_an_event_of_an_observed_system_is_escaped_everywhere() -> None:
    # Given a log event whose every field an attacker chose
    record = event(7, "log", "error", 250, HOSTILE, task=HOSTILE, message=HOSTILE, logger=HOSTILE)
    # When it is rendered, with its fields inline
    html = event_html(view(record))
    # Then no markup of theirs survives, and the row carries the shared id
    assert "<img" not in html and "onerror=alert(1)>" not in html.replace("&gt;", "")
    assert f'id="{dom.event_id(7)}"' in html and 'href="#event-7"' in html
    assert "12:00:00.250" in html


def test_a_long_timeline_leaves_the_fields_out_of_the_card() -> None:
    record = event(8, "api", "read", 250, "RUNNING", xmin=5)
    assert "title=" in event_html(view(record))
    assert "title=" not in event_html(view(record), inline_fields=False)


def test_a_status_chip_has_a_shape_and_a_label_and_escapes_an_unknown_status() -> None:
    assert "◐" in status_chip("RUNNING") and "RUNNING" in status_chip("RUNNING")
    chip = status_chip(HOSTILE)
    assert "<img" not in chip and "•" in chip


def test_a_finding_sentence_links_its_transactions_and_times_to_their_events() -> None:
    # Given a commit and a read, and a finding whose sentence names both
    commit = event(1, "db", "update", 250, "RUNNING", txid=812)
    read = event(2, "api", "read", 1250, "PENDING")
    finding = Finding(
        "stale_read", (1, 2), f"The read at 12:00:01.250 missed transaction 812 <{HOSTILE}>."
    )
    # When it is rendered
    html = linked_message(finding, {1: commit, 2: read})
    # Then the mentions link to their events and the rest is escaped
    assert '<a href="#event-1">transaction 812</a>' in html
    assert '<a href="#event-2">12:00:01.250</a>' in html
    assert "<img" not in html
    (shown,) = finding_views([finding], [commit, read])
    assert [ref.id for ref in shown.refs] == [1, 2]
    assert shown.refs[0].label == "db update (txn 812) at 12:00:00.250"


def test_a_live_task_row_cannot_break_out_of_its_id() -> None:
    # Given a task key made to close the id attribute, as a hostile writer could store it
    key = 'q" hx-swap-oob="beforeend:body"><img src=x onerror=alert(1)><b x="'
    newest = event(3, "db", "update", 250, "RUNNING", task=key)
    summary = TaskSummary(key, newest, newest.at, 1, "RUNNING")
    # When the live feed moves its row (already shown) to the top
    html = fragments.task_rows_fragment([summary], {key})
    # Then the key stays inside its attributes: no element or swap of the attacker's
    assert "<img" not in html and 'hx-swap-oob="beforeend:body"' not in html
    # the delete of the old row and the insert of the new are the only swaps
    assert html.count('hx-swap-oob="') == 2
    assert f'id="{escape(dom.task_row_id(key))}"' in html


def test_a_status_chip_takes_its_shape_from_its_role_in_the_configured_lifecycles() -> None:
    from dashboard.render import status_chip
    from lifecycle import statuses
    from lifecycle.statuses import Lifecycle

    jobs = Lifecycle.parse(
        {
            "statuses": ["queued", "working", "done", "errored"],
            "running": "working",
            "success": ["done"],
            "failure": ["errored"],
            "transitions": ["queued -> working", "working -> done", "working -> errored"],
        }
    )
    statuses.configure({"public.jobs": jobs})
    try:
        assert 'class="chip st-failure"' in status_chip("errored") and "✕" in status_chip("errored")
        assert 'class="chip st-success"' in status_chip("done") and "✓" in status_chip("done")
        assert 'class="chip st-running"' in status_chip("working")
        assert 'class="chip st-initial"' in status_chip("queued")
        assert 'class="chip st-failure"' in status_chip("FAILED")  # the default's still
        assert 'class="chip st-unknown"' in status_chip("<b>odd</b>")
        assert "&lt;b&gt;odd&lt;/b&gt;" in status_chip("<b>odd</b>")
    finally:
        statuses.configure({})
    assert 'class="chip st-unknown"' in status_chip("errored")


def test_a_finding_shows_its_fix_line_escaped_under_its_sentence() -> None:
    # Given a replica's stale read and a response cache's
    replayed = (T0 + timedelta(milliseconds=250)).isoformat()
    read = event(1, "api", "read", 1000, "RUNNING", standby=True, replayed_at=replayed, xmin=5)
    found = [
        Finding("stale_read", (1,), "The read at 12:00:01.000 returned RUNNING.", "replica"),
        Finding("stale_read", (1,), "A cache answered.", "response_cache"),
    ]

    # When the findings fragment is rendered
    html = fragments.findings_fragment(finding_views(found, [read]), None)

    # Then each carries its fix line, escaped, under the sentence
    assert html.count('data-testid="fix"') == 2
    assert "Read your own writes from the primary" in html
    assert escape("Cache-Control: no-store") in html
    assert html.index("A cache answered.") < html.rindex('data-testid="fix"')
    # And the timeline says the read came from a replica, replayed to when
    assert TimelineBuilder().add(read).summary == (
        "returned RUNNING from a replica, replayed to 12:00:00.250"
    )
