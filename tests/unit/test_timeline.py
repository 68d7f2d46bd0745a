"""How events are laid out on a timeline: lanes, summaries, read-to-commit links, the
order, the current status and the finding marks. Pure logic."""

from __future__ import annotations

import pytest

from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord
from lifecycle.history import StatusTracker, current_status, in_time_order
from lifecycle.timeline.layout import TimelineBuilder, pin
from tests.histories import commit, event

pytestmark = pytest.mark.unit


def test_a_read_links_to_the_commit_whose_version_it_returned_even_if_it_arrived_first() -> None:
    # Given a read of version 2**32 + 5 (xmin wraps at 32 bits) that arrived before its commit
    read = event(1, "api", "read", 20, status="RUNNING", body={"xmin": 5})
    running = commit(2, 10, "PENDING", "RUNNING", 2**32 + 5, application_name="worker")
    # When the history is laid out
    views = TimelineBuilder().extend([read, running])
    # Then the read names that commit, and each event sits in its source's lane
    assert views[0].version_of == 2 and views[0].version_txid == 2**32 + 5
    assert [v.lane for v in views] == ["api", "db"]
    assert views[1].summary == "PENDING → RUNNING · txn 4294967301 · worker"


def test_offsets_count_from_the_earliest_event_of_the_history() -> None:
    views = TimelineBuilder().extend([event(1, "probe", "read", 50), event(2, "db", "insert", 0)])
    assert [round(v.offset_ms) for v in views] == [50, 0]


def test_summaries_say_what_each_source_saw() -> None:
    builder = TimelineBuilder()
    views = builder.extend(
        [
            event(1, "api", "read", 0, status="PENDING", body={}),
            event(2, "probe", "read", 1, status="PENDING", body={"latency_ms": 3.5}),
            event(3, "broker", "fail", 2, body={"attempt": 2, "actor": "run", "exception": "Boom"}),
            event(4, "log", "error", 3, body={"logger": "lab", "message": "it failed"}),
        ]
    )
    assert [v.summary for v in views] == [
        "returned PENDING (no version)",
        "saw PENDING · 3.5 ms",
        "attempt 2 · run · Boom",
        "ERROR lab: it failed",
    ]


def test_the_order_is_time_at_the_source_then_arrival() -> None:
    late, early, tie = (
        event(1, "db", "insert", 30),
        event(3, "api", "read", 10),
        event(2, "log", "warning", 30),
    )
    assert [r.id for r in in_time_order([late, early, tie])] == [3, 1, 2]


def test_the_current_status_is_the_last_commit_else_the_last_read() -> None:
    history = [
        event(1, "probe", "read", 0, status="PENDING"),
        commit(2, 1, None, "PENDING", 10),
        event(3, "api", "read", 2, status="COMPLETED"),
    ]
    assert current_status(history) == "PENDING"
    assert current_status(history[:1]) == "PENDING"
    assert current_status([history[2]]) == "COMPLETED"
    # And the tracker gives the same answer one batch at a time
    tracker = StatusTracker(history[:1])
    tracker.update(history[1:])
    assert tracker.current == current_status(history)


def test_pin_marks_the_events_a_finding_proves_and_reports_the_changes() -> None:
    views = TimelineBuilder().extend([event(1, "db", "insert", 0), event(2, "api", "read", 1)])
    found = [Finding("stale_read", (1, 2), "m"), Finding("stuck", (2,), "n")]
    assert pin(views, found) == {1, 2}
    assert [v.findings for v in views] == [["stale_read"], ["stale_read", "stuck"]]
    # Pinning the same findings again changes nothing; dropping them unmarks the events
    assert pin(views, found) == set()
    assert pin(views, []) == {1, 2} and all(v.findings == [] for v in views)


def test_a_gap_event_reads_as_a_sentence_and_a_notice() -> None:
    from lifecycle.words import gap_notices

    body = {
        "dropped": 12,
        "first_at": "2026-12-02T18:33:57.120000+00:00",
        "last_at": "2026-12-02T18:34:02.480000+00:00",
        "process": "worker",
        "pid": 4242,
    }
    gap = EventRecord(id=9, source="broker", kind="gap", task_key="t", body=body)

    (view,) = TimelineBuilder().extend([gap])

    expected = (
        "the worker (pid 4242) dropped 12 broker events between 18:33:57.120 and "
        "18:34:02.480; this history may be incomplete"
    )
    assert view.summary == expected
    assert gap_notices([gap]) == [expected]
    assert gap_notices([EventRecord(id=1, source="api", kind="read", task_key="t")]) == []
