"""The checker over hand-written and generated task histories.

Each test builds a history the way the capture pieces would record it (trigger commits
with growing txids, broker steps, API reads carrying xmin and snapshot, probe polls) and
asserts on the findings a user would see. The property tests generate lifecycles that
obey every rule, check they are silent, then break them one way at a time. The language
they are written in is ``tests.histories``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle import statuses
from lifecycle.check.rules import Finding, Snapshot, check, final_read
from lifecycle.events import EventRecord
from lifecycle.statuses import COMPLETED, FAILED, PENDING, RUNNING, Lifecycle
from lifecycle.timeline.layout import TimelineBuilder
from tests.histories import (
    OTHER_TERMINAL,
    PROPERTY,
    T0,
    History,
    Plan,
    begin,
    end,
    finish,
    kinds,
    live,
    plans,
    started,
    the_stale_read,
)

pytestmark = pytest.mark.unit


def the(kind: str, findings: list[Finding]) -> Finding:
    matching = [f for f in findings if f.kind == kind]
    assert len(matching) == 1, findings
    return matching[0]


# --- one test per finding kind ------------------------------------------------------------


def test_a_read_of_an_old_version_after_a_newer_commit_is_a_stale_read() -> None:
    # Given a task whose RUNNING commit was followed, 300 ms later, by a read of the insert
    h = History()
    h.insert()
    running = h.commit(RUNNING)
    read = h.read(version=0, snapshot=None, after_ms=300)

    # When the history is checked
    findings = check(h.events)

    # Then one stale read names both transactions, without a cause (no snapshot)
    stale = the("stale_read", findings)
    assert kinds(findings) == ["stale_read"]
    assert stale.events == (running.id, read.id)
    assert stale.cause is None
    assert stale.message == (
        "The read at 12:00:00.320 returned PENDING, the version of transaction 812, although "
        "transaction 813 had committed RUNNING at 12:00:00.020, 300 ms before the read."
    )


def test_a_read_that_began_before_the_commit_is_not_stale() -> None:
    # Given a read that began 1 ms before the RUNNING commit but was recorded after it
    h = History()
    h.insert()
    h.read_during_commit(RUNNING)
    running = h.events[-2]
    assert running.at is not None
    h.read(snapshot=None, at=running.at - timedelta(milliseconds=1), client="ops", version=0)

    # When / Then nothing is stale, with or without a snapshot
    assert check(h.events) == []


def test_a_read_returning_a_status_no_commit_wrote_is_an_unwritten_read() -> None:
    # Given a task that only ever committed PENDING and RUNNING, read as COMPLETED twice
    h = History()
    h.insert()
    h.commit(RUNNING)
    first = h.read(xmin=False, status=COMPLETED)
    second = h.probe(COMPLETED)

    # When
    findings = check(h.events)

    # Then one finding holds both reads
    assert kinds(findings) == ["unwritten_read"]
    assert findings[0].events == (first.id, second.id)
    assert "COMPLETED, a status no commit of this task had written" in findings[0].message


def test_a_commit_leaving_a_terminal_status_is_a_terminal_overwrite() -> None:
    # Given a task that FAILED, then was committed COMPLETED
    h = History()
    h.insert()
    h.commit(RUNNING)
    failed = h.commit(FAILED)
    completed = h.commit(COMPLETED)

    # When
    findings = check(h.events)

    # Then the overwrite is named, and not also as a forbidden transition
    assert kinds(findings) == ["terminal_overwrite"]
    assert findings[0].events == (failed.id, completed.id)
    assert findings[0].message == (
        "The task left terminal status FAILED for COMPLETED in transaction 815 at 12:00:00.040."
    )


def test_skipping_running_is_a_forbidden_transition() -> None:
    # Given a task committed straight from PENDING to COMPLETED
    h = History()
    h.insert()
    done = h.commit(COMPLETED)

    # When
    findings = check(h.events)

    # Then
    assert kinds(findings) == ["forbidden_transition"]
    assert findings[0].events == (1, done.id)
    assert "from PENDING to COMPLETED" in findings[0].message


def test_unknown_statuses_are_not_judged() -> None:
    # Given an application with its own statuses the lab lifecycle does not know
    h = History()
    h.insert("QUEUED")
    h.commit("CLAIMED")
    h.commit(COMPLETED)
    h.commit(FAILED)

    # When checked with the lab lifecycle, and with one that knows QUEUED -> CLAIMED -> DONE
    custom = Lifecycle(
        statuses=("QUEUED", "CLAIMED", COMPLETED, FAILED),
        terminal=frozenset({COMPLETED, FAILED}),
        allowed=frozenset({("QUEUED", "CLAIMED"), ("CLAIMED", COMPLETED)}),
        running="CLAIMED",
    )

    # Then only the transitions between known statuses are judged
    assert kinds(check(h.events)) == ["terminal_overwrite"]
    assert kinds(check(h.events, lifecycle=custom)) == ["terminal_overwrite"]
    h.commit("QUEUED")
    assert "forbidden_transition" not in kinds(check(h.events))


def test_a_client_seeing_an_older_version_after_a_newer_one_is_non_monotonic() -> None:
    # Given a client that read RUNNING, then a replica's PENDING, both by xmin, no snapshot
    h = History()
    h.insert()
    h.commit(RUNNING)
    ahead = h.read(snapshot=None)
    behind = h.read(version=0, snapshot=None, at=h.events[1].at)  # clock-skewed: not stale

    # When
    findings = check(h.events)

    # Then
    assert kinds(findings) == ["non_monotonic_reads"]
    assert findings[0].events == (ahead.id, behind.id)
    assert findings[0].message.startswith(
        "Client ui read RUNNING (transaction 813) at 12:00:00.030, then went back to PENDING "
        "(transaction 812)"
    )


def test_probe_reads_going_back_in_the_lifecycle_are_non_monotonic() -> None:
    # Given the probe saw COMPLETED, then RUNNING again
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.probe()
    h.probe(RUNNING)

    # When / Then
    finding = the("non_monotonic_reads", check(h.events))
    assert finding.message.startswith("The probe's run 7 read COMPLETED at")


def test_probe_reads_following_a_retry_are_monotonic() -> None:
    # Given RUNNING, back to PENDING for a retry, RUNNING again, each seen by the probe
    h = History()
    h.insert()
    for status in (RUNNING, PENDING, RUNNING, COMPLETED):
        h.commit(status)
        h.probe()

    # When / Then
    assert check(h.events) == []


def test_a_message_started_twice_without_a_retry_is_a_duplicate_execution() -> None:
    # Given message m1 started, and started again while the first run was going
    h = History()
    h.insert()
    h.broker("start")
    h.commit(RUNNING)
    h.broker("start")
    finish(h)

    # When
    findings = check(h.events)

    # Then
    assert kinds(findings) == ["duplicate_execution"]
    assert findings[0].events == (2, 4)
    assert "Message m1 started at 12:00:00.020 and again at 12:00:00.040" in findings[0].message


def test_the_row_entering_running_twice_without_a_retry_is_a_duplicate_execution() -> None:
    # Given two messages for one task, the row going RUNNING, FAILED, RUNNING with no retry
    h = History()
    h.insert()
    h.broker("start", message="m1")
    first = h.commit(RUNNING)
    h.commit(FAILED)
    h.broker("start", message="m2")
    again = h.commit(RUNNING)

    # When
    findings = check(h.events)

    # Then the second entry is a duplicate execution (and leaving FAILED an overwrite)
    assert kinds(findings) == ["duplicate_execution", "terminal_overwrite"]
    assert the("duplicate_execution", findings).events == (first.id, again.id)


def test_a_start_before_the_insert_is_enqueue_before_commit() -> None:
    # Given the broker delivered the message before the insert's event
    h = History()
    h.broker("enqueue")
    h.broker("start")
    insert = h.insert()

    # When
    findings = check(h.events)

    # Then
    assert kinds(findings) == ["enqueue_before_commit"]
    assert findings[0].events == (1, 2, insert.id)
    assert "before transaction 812 committed the task's row" in findings[0].message


def test_a_worker_not_finding_the_task_is_enqueue_before_commit() -> None:
    # Given the insert's trigger ran, the worker started and could not find the row
    h = History()
    h.insert()
    h.broker("enqueue")
    h.broker("start")
    h.log("warning", "Task matching query does not exist.")
    h.broker("fail")
    h.broker("retry")
    h.broker("start", attempt=2)
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.broker("ack", attempt=2)

    # When
    findings = check(h.events)

    # Then
    assert kinds(findings) == ["enqueue_before_commit"]
    assert findings[0].events == (1, 3, 4)


def test_a_not_found_log_that_overtook_its_start_event_still_counts() -> None:
    # Given the log record reached the ingestor before the broker's start event
    h = History()
    h.insert()
    h.log("warning", "task t1 not found; dropping the message")
    h.broker("start")
    h.broker("ack")

    # When / Then
    assert kinds(check(h.events)) == ["enqueue_before_commit"]
    assert check(h.events)[0].events == (1, 2, 3)


def test_an_acked_task_left_running_is_stuck() -> None:
    # Given the worker acked but the last commit left the row RUNNING
    h = History()
    h.insert()
    h.broker("start")
    running = h.commit(RUNNING)
    h.broker("ack")

    # When
    findings = check(h.events)

    # Then
    assert kinds(findings) == ["stuck"]
    assert findings[0].events == (running.id, 4)
    assert "left it RUNNING, not in a terminal status" in findings[0].message


def test_a_task_given_up_on_but_left_pending_is_stuck() -> None:
    h = History()
    h.insert()
    h.broker("start")
    h.broker("fail", exception="ValueError: boom")
    h.broker("nack")

    assert kinds(check(h.events)) == ["stuck"]


def test_a_final_status_the_worker_committed_is_a_mismatch_born_in_the_commit() -> None:
    # Given a run expected to FAIL whose worker committed COMPLETED
    h = History()
    h.insert()
    h.commit(RUNNING)
    done = h.commit(COMPLETED)
    last = h.probe()

    # When
    findings = check(h.events, expected=FAILED)

    # Then
    mismatch = the("expectation_mismatch", findings)
    assert mismatch.cause == "committed"
    assert mismatch.events == (done.id, last.id)
    assert mismatch.message == (
        "The final read at 12:00:00.040 returned COMPLETED where FAILED was expected; the "
        "worker committed COMPLETED in transaction 814 at 12:00:00.030 and nothing replaced "
        "it, so the read path is innocent."
    )


def test_a_final_status_only_the_reads_show_is_a_mismatch_born_in_the_reads() -> None:
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.commit(COMPLETED)
    last = h.probe(FAILED)

    findings = check(h.events, expected=COMPLETED)

    mismatch = the("expectation_mismatch", findings)
    assert (mismatch.cause, mismatch.events) == ("reads_only", (last.id,))
    assert kinds(findings) == ["unwritten_read", "expectation_mismatch"]


def test_a_final_status_replaced_by_a_later_commit_is_a_mismatch_of_the_read_path() -> None:
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.probe(PENDING)

    findings = check(h.events, expected=COMPLETED)

    assert the("expectation_mismatch", findings).cause == "superseded"
    assert "replaced it with COMPLETED" in the("expectation_mismatch", findings).message


def test_no_mismatch_when_the_final_read_matches_or_nothing_was_read() -> None:
    h = History()
    h.insert()
    assert check(h.events, expected=COMPLETED) == []
    h.probe()
    h.read()  # the probe's read wins over the API's
    assert check(h.events, expected=PENDING) == []
    assert final_read(h.events) == h.events[1]


# --- the details the rules rest on --------------------------------------------------------


def test_a_snapshot_is_visible_below_xmin_and_below_xmax_outside_xip() -> None:
    snapshot = Snapshot.parse("100:105:101,103")
    assert snapshot is not None
    assert [snapshot.sees(t) for t in (99, 100, 101, 102, 103, 104, 105)] == [
        True,
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    assert Snapshot.parse("not a snapshot") is None
    assert Snapshot.parse(None) is None


def test_polls_of_one_stale_version_make_one_finding() -> None:
    # Given five polls returning the insert, RUNNING visible in each snapshot
    h = History()
    h.insert()
    running = h.commit(RUNNING)
    polls = [h.read(version=0) for _ in range(5)]

    # When
    findings = check(h.events)

    # Then one cached_object finding lists every poll and the newer commit
    assert kinds(findings) == ["stale_read"]
    assert findings[0].events == (running.id, *(p.id for p in polls))
    assert findings[0].message.startswith("5 reads from 12:00:00.030 to 12:00:00.070 returned")


def test_the_margin_absorbs_clock_skew() -> None:
    # Given a read that began 5 ms after the commit by the clocks
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.read(version=0, snapshot=None, after_ms=5)

    # Then it is stale with no margin and not with a 10 ms one, nor the default
    assert kinds(check(h.events, margin=timedelta(0))) == ["stale_read"]
    assert check(h.events, margin=timedelta(milliseconds=10)) == []
    assert check(h.events) == []


def test_a_write_a_moment_before_the_read_is_not_proof_of_a_commit() -> None:
    # Given the worker's RUNNING write, then 20 ms later a read of PENDING whose snapshot
    # shows the writer still running (a db event's time is the write's, not the commit's)
    h = History()
    h.insert()
    running = h.commit(RUNNING)
    h.read(version=0, snapshot=f"{running.txid}:{running.txid}:", after_ms=20)

    # Then that is not a stale read
    assert check(h.events) == []


def test_xmin_is_the_txid_modulo_two_to_the_32() -> None:
    # Given txids past the first wraparound epoch
    h = History(first_txid=3 * 2**32 + 5)
    h.insert()
    h.commit(RUNNING)
    read = h.read(version=0)
    assert read.body["xmin"] == 5

    # Then the read is still matched to the insert's version
    assert the("stale_read", check(h.events)).cause == "cached_object"


def test_a_read_whose_snapshot_shows_the_commit_in_progress_is_not_stale() -> None:
    # Given a read whose clock says it began after the RUNNING commit's trigger ran, but
    # whose snapshot lists that transaction as still in progress (a slow commit)
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.read(version=0, snapshot="810:814:813", after_ms=30)

    # When / Then the snapshot wins over the clocks
    assert check(h.events) == []


def test_a_read_recorded_before_the_commit_is_not_stale_whatever_the_clocks_say() -> None:
    # Given a read recorded before the RUNNING commit's event, its clock 50 ms ahead
    h = History()
    h.insert()
    h.read(version=0, snapshot=None, at=h.clock + timedelta(milliseconds=50))
    h.commit(RUNNING)

    # When / Then
    assert check(h.events) == []


def test_a_status_read_before_its_commit_arrived_is_unwritten_by_then() -> None:
    # Given the probe saw COMPLETED before any commit of COMPLETED had arrived
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.probe(COMPLETED)
    h.commit(COMPLETED)

    # When / Then
    finding = the("unwritten_read", check(h.events))
    assert finding.message.endswith("by then (transaction 814 wrote it only later).")


def test_late_recorded_reads_are_placed_at_the_earliest_version_they_may_have_seen() -> None:
    # Given RUNNING, PENDING (a retry) and RUNNING again, and probe reads of RUNNING then
    # PENDING that were both recorded after the second RUNNING had arrived
    h = History()
    h.insert()
    for status in (RUNNING, PENDING, RUNNING):
        h.commit(status)
    h.probe(RUNNING)
    h.probe(PENDING)

    # When / Then they may have seen the first RUNNING and the retry's PENDING: in order
    assert check(h.events) == []


def test_an_ack_followed_by_another_start_is_not_stuck_yet() -> None:
    # Given a pipeline whose first message is acked while the next stage goes on
    h = History()
    h.insert()
    h.broker("start", message="stage-1")
    h.commit(RUNNING)
    h.broker("ack", message="stage-1")
    h.broker("start", message="stage-2")

    # When / Then
    assert check(h.events) == []


def test_an_acked_task_left_running_is_stuck_when_the_apis_enqueue_arrives_after_the_ack() -> None:
    # Given the lab's missing-commit run as the ingestor stored it: the API's publisher and
    # the worker's race, so the API's enqueue of the message came in after the worker's
    # start and ack (the same batch, in RabbitMQ's order)
    h = History()
    h.insert()
    running = h.commit(RUNNING)
    h.broker("start")
    h.broker("ack")
    ack = h.events[-1]
    h.broker("enqueue")
    h.probe()

    # When
    findings = check(h.events, expected=COMPLETED)

    # Then the enqueue that caused the acked delivery says nothing about work to come
    assert kinds(findings) == ["stuck", "expectation_mismatch"]
    assert findings[0].events == (running.id, ack.id)


def test_an_ack_followed_by_a_new_message_or_attempt_is_not_stuck_yet() -> None:
    # Given an acked delivery, then another message for the task, or a later attempt of
    # its message, sent after it
    for kind, later in (("enqueue", {"message": "m2"}), ("retry", {"attempt": 2})):
        h = History()
        h.insert()
        h.broker("enqueue")
        h.broker("start")
        h.commit(RUNNING)
        h.broker("ack")
        h.broker(kind, **later)

        # When / Then the work goes on: nothing is stuck yet
        assert check(h.events) == [], kind


def test_not_found_after_the_worker_wrote_the_row_is_not_enqueue_before_commit() -> None:
    # Given a worker that logged "not found" about something else, after writing the row
    h = History()
    h.insert()
    h.broker("start")
    h.commit(RUNNING)
    h.log("warning", "Report template not found, using the default")
    finish(h)

    # When / Then
    assert check(h.events) == []


def test_reads_that_failed_say_nothing() -> None:
    h = History()
    h.insert()
    h.read(http_status=503)
    h.commit(RUNNING)
    h.read(http_status=404)
    assert check(h.events) == []


def test_findings_are_sorted_deterministic_and_serialisable() -> None:
    # Given a history with several anomalies, handed over in shuffled order
    h = History()
    h.broker("start")
    h.insert()
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.commit(FAILED)
    h.probe(PENDING)
    shuffled = list(h.events)
    random.Random(3).shuffle(shuffled)

    # When
    findings = check(h.events, expected=COMPLETED)

    # Then the order is by first event and the input order does not matter
    assert [f.events[0] for f in findings] == sorted(f.events[0] for f in findings)
    assert check(shuffled, expected=COMPLETED) == findings
    assert findings[0].as_json() == {
        "kind": "enqueue_before_commit",
        "events": [1, 2],
        "message": findings[0].message,
        "cause": None,
        "fix": findings[0].fix,
    }
    assert "on_commit" in findings[0].fix


# --- the lab's scenarios --------------------------------------------------------------------


def test_a_run_still_polling_has_no_final_read_yet() -> None:
    # Given a run mid-way: its latest read says RUNNING, where FAILED is expected
    h = started()
    h.probe()
    # Then nothing is said of the expectation (a live page asks mid-run)
    assert check(h.events, expected=FAILED) == []
    # Until the run has its verdict: the read before it was the final one
    end(h)
    assert kinds(check(h.events, expected=FAILED)) == ["expectation_mismatch"]


def test_scenario_succeeds_is_clean() -> None:
    h = started()
    h.probe()
    finish(h)
    h.probe()
    assert check(h.events, expected=COMPLETED) == []


def test_scenario_fails_cleanly_is_clean() -> None:
    h = started()
    h.commit(FAILED)  # the lab's actor returns after committing FAILED: the message is acked
    h.broker("ack")
    h.probe()
    assert check(h.events, expected=FAILED) == []


def test_scenario_slow_with_many_reads_while_running_is_clean() -> None:
    h = started()
    for _ in range(20):
        h.read("probe-api", after_ms=100)
        h.probe()
    h.read_during_commit(COMPLETED, client="probe-api")
    h.broker("ack")
    h.read("probe-api")
    h.probe()
    assert check(h.events, expected=COMPLETED) == []


def test_scenario_retried_then_succeeds_is_clean() -> None:
    h = History()
    begin(h)
    for attempt in (1, 2):
        h.broker("start", attempt=attempt)
        h.commit(RUNNING)
        h.probe()
        h.read()
        h.commit(PENDING)
        h.log("error", f"attempt {attempt} failed", "TimeoutError")
        h.broker("fail", attempt=attempt, exception="TimeoutError")
        h.broker("retry", attempt=attempt)
        h.probe()
    h.broker("start", attempt=3)
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.broker("ack", attempt=3)
    h.read()
    h.probe()
    assert check(h.events, expected=COMPLETED) == []


def test_scenario_swallowed_error() -> None:
    # Given the worker caught the error and committed COMPLETED anyway
    h = started()
    h.probe()
    h.log("error", "payment failed", "RuntimeError: card declined")
    done = finish(h)
    h.read()
    last = h.probe()
    end(h)

    # When the scenario expected FAILED
    findings = check(h.events, expected=FAILED)

    # Then the wrong status was born in the worker's commit and no read is blamed
    assert kinds(findings) == ["swallowed_error", "expectation_mismatch"]
    mismatch = the("expectation_mismatch", findings)
    assert mismatch.cause == "committed"
    assert mismatch.events == (done.id, last.id)
    # And the swallowed error is named on its own, expectation or not
    assert kinds(check(h.events)) == ["swallowed_error"]


def test_scenario_missing_commit() -> None:
    h = started()
    h.broker("ack")
    h.probe()
    end(h)
    findings = check(h.events, expected=COMPLETED)
    assert kinds(findings) == ["stuck", "expectation_mismatch"]
    assert the("expectation_mismatch", findings).cause == "committed"


def test_scenario_overwrite_after_failure() -> None:
    h = started()
    h.commit(FAILED)
    h.commit(COMPLETED, after_ms=200)  # the "always mark it done" cleanup
    h.broker("ack")
    h.probe()
    end(h)
    assert kinds(check(h.events, expected=FAILED)) == [
        "terminal_overwrite",
        "expectation_mismatch",
    ]


def test_scenario_cached_read() -> None:
    # Given an API that keeps serving the object it cached at creation
    h = History()
    begin(h)
    h.read(version=0)
    h.broker("start")
    h.commit(RUNNING)
    stale = [h.read(version=0) for _ in range(3)]
    finish(h)
    staler = [h.read(version=0) for _ in range(3)]

    # When
    findings = check(h.events)

    # Then each (returned, newer) pair is one cached_object finding holding its polls
    assert kinds(findings) == ["stale_read", "stale_read"]
    assert {f.cause for f in findings} == {"cached_object"}
    assert findings[0].events[1:] == tuple(r.id for r in stale)
    assert findings[1].events[1:] == tuple(r.id for r in staler)


def test_scenario_snapshot_read() -> None:
    # Given a reader in a repeatable-read transaction opened before the worker ran
    h = History()
    begin(h)
    old = f"{h.first_txid + 1}:{h.first_txid + 1}:"
    h.broker("start")
    h.commit(RUNNING)
    finish(h)
    reads = [h.read(version=0, snapshot=old, after_ms=300) for _ in range(3)]

    # When
    f = the_stale_read(h.events, "old_snapshot")

    # Then
    assert f.events[1:] == tuple(r.id for r in reads)
    assert "a snapshot taken before it (an old snapshot)" in f.message


def test_a_read_the_application_answered_from_its_cache_is_a_cached_response() -> None:
    # Given a view that cached the task's RUNNING answer, with the version and snapshot of
    # the read that filled its cache, and serves it after COMPLETED committed
    h = started()
    filled = h.read(version=1)
    finish(h)
    hits = [h.read(version=1, snapshot=filled.body["snapshot"], after_ms=300) for _ in range(3)]
    for hit in hits:
        hit.body["cached"] = True

    # When
    f = the_stale_read(h.events, "cached_response")

    # Then the cache is named as the cause, with what fixes it
    assert f.events[1:] == tuple(r.id for r in hits)
    assert "answered from its own cache" in f.message


def test_scenario_enqueue_before_commit() -> None:
    # Given the lab's API: insert, send inside the transaction, commit 500 ms later; the
    # worker finds no row, logs it and drops the message (acked)
    h = History()
    insert = h.insert()
    h.broker("enqueue")
    start = h.add("broker", "start", body={"message_id": "m1", "attempt": 1})
    log = h.add("log", "warning", body={"message": "task t1 not found; dropping the message"})
    h.broker("ack")
    h.probe(after_ms=500)

    # When the scenario expected COMPLETED
    findings = check(h.events, expected=COMPLETED)

    # Then the cause is named once, not again as a stuck task, and the final PENDING is
    # the insert's own status
    assert kinds(findings) == ["enqueue_before_commit", "expectation_mismatch"]
    assert findings[0].events == (insert.id, start.id, log.id)
    assert "the insert committed PENDING" in findings[1].message


def test_scenario_enqueue_before_commit_with_a_retry() -> None:
    # Given a worker that raises on the missing row, so Dramatiq retries once it committed
    h = History()
    h.broker("enqueue")
    h.broker("start")
    h.log("warning", "Task not found", "Task.DoesNotExist")
    h.insert()
    h.broker("fail")
    h.broker("retry")
    h.broker("start", attempt=2)
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.broker("ack", attempt=2)
    assert kinds(check(h.events)) == ["enqueue_before_commit"]


def test_scenario_redelivery() -> None:
    # Given the worker finished, the broker redelivered the same message, and it ran again
    h = started()
    h.commit(COMPLETED)
    h.log("warning", "task t1: worker process dies before acking its message")
    h.broker("start")
    again = h.commit(RUNNING)
    finish(h)

    # When
    findings = check(h.events)

    # Then one duplicate execution (the start and the row's second RUNNING together),
    # and the row leaving COMPLETED is an overwrite in its own right
    assert kinds(findings) == ["duplicate_execution", "terminal_overwrite"]
    duplicate = the("duplicate_execution", findings)
    assert again.id in duplicate.events
    assert "put the row in RUNNING again" in duplicate.message


# --- generated histories ------------------------------------------------------------------


@PROPERTY
@given(plans)
def test_histories_that_obey_the_lifecycle_have_no_finding(plan: Plan) -> None:
    h = live(plan)
    assert check(h.events) == []
    assert check(h.events, expected=plan.outcome) == []


@PROPERTY
@given(plans, st.sampled_from(["visible", "none", "old"]), st.data())
def test_an_inserted_stale_read_is_found_alone(plan: Plan, kind: str, data: st.DataObject) -> None:
    h = live(plan)
    version = data.draw(st.integers(0, len(h.versions) - 2))
    snapshot = {"visible": True, "none": None, "old": f"{h.versions[version].txid + 1}:" * 2}
    h.read("cache", version=version, snapshot=snapshot[kind], after_ms=300)

    findings = check(h.events)

    assert kinds(findings) == ["stale_read"]
    cause = {"visible": "cached_object", "none": None, "old": "old_snapshot"}[kind]
    assert findings[0].cause == cause
    assert f"transaction {h.versions[-1].txid} had committed" in findings[0].message


@PROPERTY
@given(plans, st.booleans())
def test_an_inserted_unwritten_read_is_found_alone(plan: Plan, by_probe: bool) -> None:
    h = live(plan)
    never = OTHER_TERMINAL[plan.outcome]
    read = h.probe(never, run=99) if by_probe else h.read("x", xmin=False, status=never)

    findings = check(h.events)

    assert kinds(findings) == ["unwritten_read"]
    assert findings[0].events == (read.id,)


# Each fault that live() can insert, with the one finding it must give (a missing commit
# leaves the task stuck)
@pytest.mark.parametrize(
    "fault",
    [
        "terminal_overwrite",
        "forbidden_transition",
        "duplicate_execution",
        "enqueue_before_commit",
        "stuck",
    ],
)
@PROPERTY
@given(plans)
def test_an_inserted_fault_is_found_alone(fault: str, plan: Plan) -> None:
    assert kinds(check(live(plan, fault).events)) == [fault]


@PROPERTY
@given(plans, st.sampled_from([PENDING, RUNNING]), st.booleans())
def test_inserted_non_monotonic_reads_are_found_alone(
    plan: Plan, back_to: str, by_probe: bool
) -> None:
    h = live(plan)
    if by_probe:
        h.probe(back_to)
        # served by the API (status only), so no cache in front of it answered
        h.read(None, xmin=False, snapshot=False, status=back_to, after_ms=1)
    else:
        # Status-only reads: a snapshot would prove the going back a stale read as well
        # (test_a_stale_object_is_named_by_its_snapshot)
        h.read("flaky", xmin=False, snapshot=False)
        h.read("flaky", xmin=False, snapshot=False, status=back_to)

    assert kinds(check(h.events)) == ["non_monotonic_reads"]


def enqueue_arriving_last(events: list[EventRecord]) -> list[EventRecord]:
    """The same history, the API's enqueue stored after everything the worker published
    (its publisher lost the race to the ingestor): ids renumbered in the new order."""
    enqueues = [e for e in events if e.source == "broker" and e.kind == "enqueue"]
    moved = [e for e in events if e not in enqueues] + enqueues
    return [replace(e, id=n) for n, e in enumerate(moved, start=1)]


@PROPERTY
@given(plans)
def test_a_missing_commit_is_found_alone_whenever_the_enqueue_arrives(plan: Plan) -> None:
    assert kinds(check(enqueue_arriving_last(live(plan, "stuck").events))) == ["stuck"]
    assert check(enqueue_arriving_last(live(plan).events)) == []


@PROPERTY
@given(plans)
def test_an_unexpected_final_status_is_found_alone(plan: Plan) -> None:
    h = live(plan)

    findings = check(h.events, expected=OTHER_TERMINAL[plan.outcome])

    assert kinds(findings) == ["expectation_mismatch"]
    assert findings[0].cause == "committed"


# Commits copied from an application's own database (capture --database): they reach the
# store whenever the follower copies them, after the reads and broker steps around them.


def copied_late(events: list[EventRecord], lag: int = 1000) -> list[EventRecord]:
    """The same history, its commits arriving after everything else (the follower was
    stopped meanwhile): new, higher ids; the same times; their database named."""
    others = [e for e in events if e.source != "db"]
    commits = [e for e in events if e.source == "db"]
    return others + [
        replace(e, id=lag + i, body={**e.body, "database": "app"}) for i, e in enumerate(commits)
    ]


def same_findings(events: list[EventRecord], expected: str | None = None) -> None:
    late = copied_late(events)
    moved = {
        e.id: c.id
        for e, c in zip(
            sorted((e for e in events if e.source == "db"), key=lambda e: e.id),
            sorted((e for e in late if e.source == "db"), key=lambda e: e.id),
            strict=True,
        )
    }
    want = [
        (f.kind, f.cause, tuple(sorted(moved.get(i, i) for i in f.events)))
        for f in check(events, expected)
    ]
    got = [(f.kind, f.cause, f.events) for f in check(late, expected)]
    assert sorted(got) == sorted(want)


def test_commits_copied_late_are_judged_as_if_they_had_come_on_time() -> None:
    # Given a clean run, a stuck one and a cached read, each with its commits copied late
    clean = History()
    begin(clean)
    clean.broker("start")
    clean.commit(RUNNING)
    clean.read()
    clean.commit(COMPLETED)
    clean.broker("ack")
    clean.read()
    stuck = History()
    stuck.insert()
    stuck.broker("start")
    stuck.commit(RUNNING)
    stuck.broker("ack")
    stuck.read()
    cached = History()
    begin(cached)
    cached.broker("start")
    cached.commit(RUNNING)
    for _ in range(3):
        cached.read(version=0)
    cached.commit(COMPLETED)
    cached.broker("ack")
    # Then the findings are those of the same history arriving on time, on their events
    for h in (clean, stuck, cached):
        same_findings(h.events)
    assert kinds(check(copied_late(clean.events))) == []
    assert kinds(check(copied_late(stuck.events))) == ["stuck"]


def test_a_start_before_a_copied_insert_was_written_is_still_enqueue_before_commit() -> None:
    h = History()
    h.broker("enqueue")
    h.broker("start")
    h.insert()
    findings = check(copied_late(h.events))
    assert kinds(findings) == ["enqueue_before_commit"]
    assert findings[0].events == (1, 2, 1000)


def test_a_copied_commit_is_placed_by_its_commit_time_when_the_server_has_one() -> None:
    # Given an insert written first, a start 20 ms later, and the insert's commit 200 ms
    # after its write (the API held its transaction open)
    h = History()
    insert = h.insert()
    h.broker("enqueue")
    h.broker("start")
    late = copied_late(h.events)
    # When the server recorded no commit time, the write time is all there is
    assert kinds(check(late)) == []
    # Then with the commit time, the start came before the commit: the message was early
    committed = (insert.at + timedelta(milliseconds=200)).isoformat()  # type: ignore[operator]
    late = [
        replace(e, body={**e.body, "committed_at": committed}) if e.source == "db" else e
        for e in late
    ]
    assert kinds(check(late)) == ["enqueue_before_commit"]


def test_a_commit_time_from_the_server_replaces_the_margin() -> None:
    # Given a read of the old version 100 ms after the new one was written: within the
    # margin, so clocks alone cannot say the read began after its commit
    h = History()
    h.insert()
    h.broker("start")
    running = h.commit(RUNNING)
    h.read(version=0, snapshot=None, after_ms=100)
    assert "stale_read" not in kinds(check(h.events))
    # When the server says the commit came 5 ms after the write
    committed = (running.at + timedelta(milliseconds=5)).isoformat()  # type: ignore[operator]
    events = [
        replace(e, body={**e.body, "committed_at": committed}) if e.id == running.id else e
        for e in h.events
    ]
    # Then the read began after it: stale
    assert kinds(check(events)) == ["stale_read"]


# swallowed_error: found with no expectation at all.


def swallowing(level: str = "error", exception: str | None = "LLMError: timed out") -> History:
    h = History()
    h.insert()
    h.broker("start")
    h.commit(RUNNING)
    h.log(level, "LLM call failed", exception)
    finish(h)
    return h


def test_an_error_logged_then_success_committed_and_acked_is_a_swallowed_error() -> None:
    h = swallowing()
    (found,) = check(h.events)
    assert found.kind == "swallowed_error"
    assert found.events == (2, 4, 5, 6)  # the start, the log, the COMPLETED commit, the ack
    assert "logged ERROR at 12:00:00.040 ('LLM call failed'), then committed COMPLETED" in (
        found.message
    )
    assert "no failure was ever committed" in found.message


def test_a_warning_counts_only_when_it_carries_an_exception() -> None:
    assert kinds(check(swallowing("warning").events)) == ["swallowed_error"]
    assert kinds(check(swallowing("warning", exception=None).events)) == []


def test_errors_of_a_failed_attempt_that_is_retried_are_not_swallowed() -> None:
    # Given retry-then-succeeds: the first attempt logs its error and fails, the second
    # succeeds without one
    h = History()
    h.insert()
    h.broker("start", attempt=1)
    h.commit(RUNNING)
    h.log("error", "transient failure on attempt 1", "TransientError")
    h.commit(PENDING)
    h.broker("fail", attempt=1, exception="TransientError()")
    h.broker("retry", attempt=2)
    h.broker("start", attempt=2)
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.broker("ack", attempt=2)
    assert kinds(check(h.events, expected=COMPLETED)) == []


def test_no_error_is_swallowed_once_a_failure_was_committed() -> None:
    # Given the worker committed FAILED and a cleanup path COMPLETED over it
    h = History()
    h.insert()
    h.broker("start")
    h.commit(RUNNING)
    h.log("error", "invalid input", "LabError")
    h.commit(FAILED)
    finish(h)
    # Then that is an overwrite, not a swallowed error
    assert kinds(check(h.events)) == ["terminal_overwrite"]


def test_an_error_from_another_worker_thread_is_not_this_attempts() -> None:
    h = History()
    h.insert()
    h.broker("start", thread="worker-1")
    h.commit(RUNNING)
    h.add(
        "log", "error", body={"message": "other task broke", "exception": "X", "thread": "worker-2"}
    )
    h.commit(COMPLETED)
    h.broker("ack", thread="worker-1")
    assert kinds(check(h.events)) == []


# Another application's lifecycle (a scenario file's [lifecycles."public.jobs"]): the same
# histories, their statuses renamed, must give the same findings under its lifecycle.

JOBS = Lifecycle.parse(
    {
        "statuses": ["queued", "working", "done", "errored"],
        "running": "working",
        "success": ["done"],
        "failure": ["errored"],
        "transitions": [
            "queued -> working",
            "working -> done",
            "working -> errored",
            "working -> queued",
            "queued -> errored",
        ],
    }
)
RENAMED = {PENDING: "queued", RUNNING: "working", COMPLETED: "done", FAILED: "errored"}


def renamed(events: list[EventRecord], table: str = "public.jobs") -> list[EventRecord]:
    """The history as the jobs service would record it: its statuses, its table."""

    def name(status: Any) -> Any:
        return RENAMED.get(status, status)

    out = []
    for e in events:
        body = dict(e.body)
        if e.source == "db":
            body.update(
                old_status=name(body.get("old_status")),
                new_status=name(body.get("new_status")),
                values={"status": name(e.status)},
                table=table,
            )
        out.append(replace(e, status=name(e.status), body=body))
    return out


def summary(findings: list[Finding]) -> list[tuple[str, str | None, tuple[int, ...]]]:
    return [(f.kind, f.cause, f.events) for f in findings]


@contextlib.contextmanager
def jobs_table() -> Iterator[None]:
    """public.jobs has the JOBS lifecycle, as its scenario file would say."""
    statuses.configure({"public.jobs": JOBS})
    try:
        yield
    finally:
        statuses.configure({})


@pytest.fixture
def jobs_configured() -> Iterator[None]:
    with jobs_table():
        yield


FAULTS = [
    None,
    "terminal_overwrite",
    "forbidden_transition",
    "duplicate_execution",
    "enqueue_before_commit",
    "stuck",
]


@PROPERTY
@given(plans, st.sampled_from(FAULTS), st.booleans())
def test_another_lifecycle_gets_the_same_findings_in_its_own_words(
    plan: Plan, fault: str | None, expect_other: bool
) -> None:
    h = live(plan, fault)
    expected = OTHER_TERMINAL[plan.outcome] if expect_other else plan.outcome
    want = check(h.events, expected)

    # Given as a parameter, and found from the table the commits came from.
    given_lc = check(renamed(h.events), RENAMED[expected], lifecycle=JOBS)
    with jobs_table():
        found_lc = check(renamed(h.events), RENAMED[expected])

    assert summary(given_lc) == summary(want)
    assert summary(found_lc) == summary(want)
    for finding in found_lc:
        for lab_status in (PENDING, COMPLETED, FAILED):
            assert f" {lab_status}" not in finding.message, finding.message


def test_queued_working_done_errored_gets_the_right_findings(jobs_configured: None) -> None:
    # Given a job that fails, is then overwritten with done, and is read done
    h = History()
    h.insert()
    h.broker("enqueue")
    h.broker("start")
    h.commit(RUNNING)
    h.commit(FAILED)
    h.broker("ack")
    h.commit(COMPLETED)
    h.probe()
    events = renamed(h.events)

    # When it is checked with the lifecycle of its table
    findings = check(events, "errored")

    # Then the overwrite of a terminal status is named in its own statuses
    assert kinds(findings) == ["terminal_overwrite", "expectation_mismatch"]
    assert "terminal status errored for done" in the("terminal_overwrite", findings).message


def test_a_swallowed_error_under_another_lifecycle(jobs_configured: None) -> None:
    h = History()
    h.insert()
    h.broker("enqueue")
    h.broker("start")
    h.commit(RUNNING)
    h.log("warning", "LLM call failed", "Traceback (most recent call last): ...")
    finish(h)
    h.probe()

    findings = check(renamed(h.events), "errored")

    assert kinds(findings) == ["swallowed_error", "expectation_mismatch"]
    assert "committed done in transaction" in the("swallowed_error", findings).message


def test_a_transition_its_lifecycle_does_not_allow_is_forbidden(jobs_configured: None) -> None:
    # Given a lifecycle with no retry (working -> queued is not in its transitions)
    strict = replace(JOBS, allowed=JOBS.allowed - {("working", "queued")})
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.commit(PENDING)
    h.commit(RUNNING)
    h.commit(COMPLETED)

    assert check(renamed(h.events), lifecycle=JOBS) == []
    assert kinds(check(renamed(h.events), lifecycle=strict)) == ["forbidden_transition"]


def test_an_unconfigured_table_is_judged_by_the_default_lifecycle() -> None:
    # Without its lifecycle the jobs' statuses are unknown ones: not judged at all.
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.commit(FAILED)
    h.commit(COMPLETED)
    assert kinds(check(h.events)) == ["terminal_overwrite"]
    assert check(renamed(h.events, table="public.unconfigured")) == []


# -- gaps: a publisher dropped events -------------------------------------------------------


def gap(h: History, *, first: datetime, last: datetime, dropped: int = 12) -> EventRecord:
    """A gap event as the publisher sends it once RabbitMQ is back: at its first drop."""
    body = {
        "dropped": dropped,
        "first_at": first.isoformat(),
        "last_at": last.isoformat(),
        "process": "worker",
        "pid": 51,
    }
    return h.add("broker", "gap", at=first, body=body, after_ms=0)


def test_no_duplicate_execution_is_claimed_where_a_gap_could_hide_the_retry() -> None:
    # Given message m1 started twice, and the worker dropped broker events in between
    h = History()
    h.insert()
    h.broker("start")
    first = h.clock
    h.commit(RUNNING)
    h.broker("start")
    finish(h)
    gap(h, first=first + timedelta(milliseconds=5), last=first + timedelta(milliseconds=15))

    # When / Then: the dropped events may be the retry, so no duplicate is claimed
    assert kinds(check(h.events)) == []


def test_a_redelivered_start_is_a_duplicate_execution_even_with_a_gap() -> None:
    # Given RabbitMQ said it delivered m1 again: no lost retry explains that
    h = History()
    h.insert()
    h.broker("start")
    first = h.clock
    h.commit(RUNNING)
    h.broker("start", redelivered=True)
    finish(h)
    gap(h, first=first, last=first + timedelta(milliseconds=20))

    # When / Then
    assert kinds(check(h.events)) == ["duplicate_execution"]


def test_a_gap_elsewhere_in_time_changes_nothing() -> None:
    # Given a duplicate start, and a gap an hour before it
    h = History()
    h.insert()
    h.broker("start")
    h.commit(RUNNING)
    h.broker("start")
    finish(h)
    gap(h, first=T0 - timedelta(hours=1), last=T0 - timedelta(minutes=59))

    # When / Then
    assert kinds(check(h.events)) == ["duplicate_execution"]


def test_an_ack_followed_by_a_gap_is_not_stuck() -> None:
    # Given the worker acked with the row RUNNING, then dropped broker events (a new start?)
    h = History()
    h.insert()
    h.broker("start")
    h.commit(RUNNING)
    h.broker("ack")
    later = h.clock + timedelta(seconds=1)
    gap(h, first=later, last=later + timedelta(seconds=2))

    # When / Then: what came after the ack is unknown, so "stuck" is not claimed
    assert kinds(check(h.events)) == []


def test_a_gap_does_not_hide_what_events_prove() -> None:
    # Given a stale read (proven by the events present) and a gap around it
    h = History()
    h.insert()
    h.broker("start")
    h.commit(RUNNING)
    finish(h)
    h.read(version=-2, snapshot=False, after_ms=400)
    gap(h, first=T0, last=h.clock)

    # When / Then
    assert "stale_read" in kinds(check(h.events))


def test_a_redelivered_message_is_a_duplicate_execution_named_as_redelivery() -> None:
    # Given the worker died before acking m1, and RabbitMQ delivered it again
    h = History()
    h.insert()
    h.broker("start", redelivered=False)
    h.commit(RUNNING)
    h.broker("start", redelivered=True)
    h.commit(COMPLETED)
    h.broker("ack", redelivered=True)

    # When
    (finding,) = check(h.events)

    # Then it is named for what it is
    assert (finding.kind, finding.cause) == ("duplicate_execution", "redelivery")
    assert "RabbitMQ redelivered it, as its first delivery was never acked" in finding.message


# --- async actors: an attempt is an attempt, whatever thread ran it -----------------------
#
# Dramatiq's AsyncIO middleware runs an ``async def`` actor on its event-loop thread: the
# broker's start and ack name the worker thread, the warning the loop's. The client tags
# what an attempt logs with its message id and attempt number.

WORKER, LOOP = "Thread-6", "Thread-2"


def async_swallowing(**log: Any) -> History:
    h = History()
    h.insert()
    h.broker("start", thread=WORKER)
    h.commit(RUNNING)
    h.log("warning", "LLM call failed", "LLMError: timed out", thread=LOOP, **log)
    h.commit(COMPLETED)
    h.broker("ack", thread=WORKER)
    return h


def test_an_async_actors_swallowed_warning_is_tied_to_its_attempt_by_message_id() -> None:
    # Given the warning came from the event loop's thread, naming its attempt
    h = async_swallowing(message_id="m1", attempt=1)
    # Then it is the attempt's swallowed error
    (found,) = check(h.events)
    assert found.kind == "swallowed_error" and found.events == (2, 4, 5, 6)
    assert "logged WARNING" in found.message


def test_a_record_of_another_attempt_or_message_is_not_this_attempts() -> None:
    assert check(async_swallowing(message_id="m2", attempt=1).events) == []
    assert check(async_swallowing(message_id="m1", attempt=2).events) == []


def test_an_untagged_record_from_another_thread_is_judged_as_before() -> None:
    # Given an old event (no attempt named) from another thread: ruled out, as it was
    assert check(async_swallowing().events) == []


def test_a_record_of_a_delivery_that_died_is_not_blamed_on_its_redelivery() -> None:
    # Given a first delivery that logged an error and was killed before its ack, and
    # RabbitMQ's redelivery (same message id and attempt: Retries never ran) in another
    # process that committed COMPLETED and acked
    h = History()
    h.insert()
    h.broker("start", pid=51, thread=WORKER)
    h.commit(RUNNING)
    h.log("error", "boom", "X", thread=LOOP, message_id="m1", attempt=1, pid=51)
    h.broker("start", pid=77, thread=WORKER, redelivered=True)
    h.commit(COMPLETED)
    h.broker("ack", pid=77, thread=WORKER)
    # Then no attempt swallowed the error: the one that logged it never acked
    assert "swallowed_error" not in kinds(check(h.events))


def test_a_read_inside_its_writers_transaction_is_not_a_cached_object() -> None:
    # Given a retry's RUNNING written in a savepoint and read back before its commit: the
    # reader's snapshot does not list its own transaction, so it "saw" only PENDING
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.commit(PENDING)
    own = h.versions[-1].txid + 1
    h.commit(RUNNING)
    h.add(
        "api",
        "read",
        status=RUNNING,
        body={"xmin": own + 1, "snapshot": f"{own}:{own}:", "client": "worker"},
    )
    # Then nothing calls its own fresh write a cached object
    assert [f for f in check(h.events) if f.cause == "cached_object"] == []


def test_a_null_attempt_is_the_first() -> None:
    from lifecycle.history import attempts

    h = History()
    h.add("broker", "start", body={"message_id": "m", "attempt": None})
    h.add("broker", "ack", body={"message_id": "m"})
    ((start, end),) = attempts(h.events)
    assert end is not None and end.kind == "ack"


THREADS = ["MainThread", "Thread-2", "Thread-6", "Thread-9", "asyncio_0", "worker-1"]


@PROPERTY
@given(plans, st.booleans(), st.data())
def test_thread_names_shuffled_across_loop_and_worker_threads_change_no_finding(
    plan: Plan, swallowed: bool, data: st.DataObject
) -> None:
    # Given a lifecycle whose attempts log (the failed ones, and maybe a swallowed error in
    # the last), each record naming its attempt
    h = live(plan)
    if swallowed:
        start = max(e.id for e in h.events if e.kind == "start")
        at = next(e.at for e in h.events if e.id == start)
        assert at is not None
        h.events.append(
            EventRecord(
                id=len(h.events) + 1,
                source="log",
                kind="warning",
                task_key="task-1",
                at=at + timedelta(milliseconds=1),
                received_at=h.clock + timedelta(milliseconds=50),  # published late
                body={"message": "swallowed", "exception": "LLMError"},
            )
        )

    def tag(events: list[EventRecord], threads: list[str]) -> list[EventRecord]:
        attempt, out = 1, []
        for e in events:
            body = dict(e.body)
            if e.source == "broker":
                attempt = body.get("attempt", attempt)
                body["thread"] = threads[e.id % len(threads)]
            elif e.source == "log":
                body.update(message_id="m1", attempt=attempt, thread=threads[-1 - e.id % 3])
            out.append(replace(e, body=body))
        return out

    # When the same history is told with the threads named one way, then another
    one = data.draw(st.permutations(THREADS))
    other = data.draw(st.permutations(THREADS))
    found = check(tag(h.events, one))
    # Then the findings are the same, and the swallowed error is found when it is there
    assert found == check(tag(h.events, other))
    wanted = ["swallowed_error"] if swallowed and plan.outcome == COMPLETED else []
    assert kinds(found) == wanted


# --- a stale object is named by its snapshot ----------------------------------------------


def test_a_stale_object_is_named_by_its_snapshot() -> None:
    # Given a read with no version (an ORM identity map handed back the object it held)
    # whose snapshot already saw the COMPLETED commit, 300 ms later
    h = History()
    h.insert()
    h.commit(RUNNING)
    done = h.commit(COMPLETED)
    read = h.read(version=-1, xmin=False, status=RUNNING, after_ms=300)
    # Then it is a stale read of a cached object, named by that commit
    (found,) = check(h.events)
    assert (found.kind, found.cause) == ("stale_read", "cached_object")
    assert found.events == (done.id, read.id)
    assert "returned RUNNING with no version of the row" in found.message
    assert f"snapshot already saw transaction {done.txid} commit COMPLETED" in found.message
    assert "identity map" in found.message and "populate_existing" in found.message
    assert f"the last RUNNING was transaction {h.versions[1].txid}'s" in found.message


def test_a_read_with_neither_version_nor_snapshot_is_not_judged_stale() -> None:
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.read(xmin=False, snapshot=False, status=RUNNING, after_ms=300)
    assert check(h.events) == []


def test_a_snapshot_that_saw_only_what_the_read_returned_is_fresh() -> None:
    # Given a no-version read whose snapshot was taken before COMPLETED committed
    h = History()
    h.insert()
    h.commit(RUNNING)
    h.commit(COMPLETED)
    running = h.versions[1].txid
    h.read(xmin=False, snapshot=f"{running + 1}:{running + 1}:", status=RUNNING, after_ms=300)
    # Then nothing proves the object stale: the snapshot gives no clock to judge it by
    assert [f for f in check(h.events) if f.cause == "cached_object"] == []


def savepointed(h: History, *statuses: str) -> int:
    """A commit written inside a savepoint: the row's xmin is the subtransaction's xid,
    one above the top-level txid the capture records. Returns that xmin."""
    h.commit(*statuses)
    return h.versions[-1].txid + 1


def test_a_read_of_a_row_written_in_a_savepoint_is_tied_to_its_commit() -> None:
    # Given RUNNING and COMPLETED each written inside a savepoint, and a fresh read of it
    h = History(txid_step=3)
    h.insert()
    savepointed(h, RUNNING)
    xmin = savepointed(h, COMPLETED)
    read = h.add(
        "api",
        "read",
        status=COMPLETED,
        body={"xmin": xmin, "snapshot": h.snapshot(), "client": "api"},
    )
    # Then nothing is found, and the timeline names the commit the read returned
    assert check(h.events, expected=COMPLETED) == []
    views = TimelineBuilder().extend(h.events)
    (view,) = [v for v in views if v.record.id == read.id]
    assert view.version_txid == h.versions[-1].txid and view.version_of is not None


def test_a_stale_read_of_a_row_written_in_a_savepoint_is_named() -> None:
    # Given a read of RUNNING (xmin: its savepoint's) although COMPLETED had committed
    h = History(txid_step=3)
    h.insert()
    xmin = savepointed(h, RUNNING)
    done = h.commit(COMPLETED)
    read = h.add(
        "api",
        "read",
        status=RUNNING,
        after_ms=300,
        body={"xmin": xmin, "snapshot": h.snapshot(), "client": "api"},
    )
    # Then it is judged stale, not skipped
    (found,) = check(h.events)
    assert (found.kind, found.cause) == ("stale_read", "cached_object")
    assert found.events == (done.id, read.id)
    # And without a snapshot it cannot be tied to a version: not judged
    bare = [e for e in h.events if e.id != read.id]
    bare.append(replace(read, body={"xmin": xmin, "client": "api"}))
    assert check(bare) == []


def test_the_newest_commit_a_snapshot_saw_is_found_by_bisection() -> None:
    from lifecycle.history import newest_seen

    txids = [100, 103, 104, 110, 111]
    snapshot = Snapshot.parse("104:111:104,107")
    assert snapshot is not None
    # 110 seen while 104 was in progress cannot happen to one row (its writers commit in
    # order): such a snapshot gets the prefix's answer, 103
    assert newest_seen(snapshot, txids) == 1
    assert newest_seen(Snapshot(111, 111, frozenset()), txids) == 3
    assert newest_seen(Snapshot(1, 1, frozenset()), txids) is None
    assert newest_seen(Snapshot(200, 200, frozenset()), txids) == 4
    assert newest_seen(Snapshot(200, 200, frozenset()), []) is None


def test_reads_with_snapshots_over_a_long_history_cost_log_time() -> None:
    # Given 10,000 commits and 2,000 no-version reads, half with a snapshot that sees
    # nothing (a hand-made event's): checked with bisections, not a scan per read (12 s
    # for twice this history before, 0.5 s after)
    h = History()
    h.insert()
    for _ in range(5_000):
        h.commit(RUNNING)
        h.commit(PENDING)
    for n in range(2_000):
        h.read(xmin=False, snapshot="1:1:" if n % 2 else True, status=PENDING)
    found = check(h.events)
    assert kinds(found) == []


@PROPERTY
@given(
    st.integers(70, 400),
    st.lists(
        st.tuples(st.integers(0, 399), st.sampled_from(["fresh", "old", "none", "xip"])),
        min_size=1,
        max_size=12,
    ),
)
def test_a_read_of_a_version_many_commits_old_is_judged_as_by_a_full_walk(
    commits: int, reads: list[tuple[int, str]]
) -> None:
    # Given a row with hundreds of versions (past the checker's walk of the newest 64), and
    # reads of old versions, some with snapshots: fresh, old, none, or one taken while a
    # later writer was in progress
    from lifecycle.check import rules

    h = History()
    h.insert()
    for n in range(commits):
        h.commit(RUNNING if n % 2 else PENDING, after_ms=40)
    for version, kind in reads:
        version %= len(h.versions) - 1
        txid = h.versions[version].txid
        snapshot = {
            "fresh": True,
            "old": f"{txid + 1}:{txid + 1}:",
            "none": None,
            "xip": f"{txid + 1}:{txid + 9}:{txid + 1},{txid + 2}",
        }[kind]
        h.read("cache", version=version, snapshot=snapshot, after_ms=300)
    arrived, _ = rules.arrival_order(h.events)
    history = rules._History(arrived, statuses.DEFAULT, rules.COMMIT_MARGIN)

    def full_walk(read: EventRecord, returned: Any) -> Any:
        snapshot = rules.read_snapshot(read)
        for newer in reversed(history.versions[returned.index + 1 : history.arrived_before(read)]):
            cause = rules._staleness(history, read, newer, snapshot)
            if cause != "fresh":
                return newer, cause
        return None

    # Then every read gets the finding a walk over every newer version would give
    for read in history.reads:
        returned = history.version_of(read)
        assert returned is not None
        assert rules._newest_missed(history, read, returned) == full_walk(read, returned)


def test_a_builder_fed_part_of_a_long_history_ties_no_read_by_its_snapshot() -> None:
    # Given the savepoint read, on a long page that loaded only the commits reads name
    h = History(txid_step=3)
    h.insert()
    xmin = savepointed(h, RUNNING)
    read = h.add("api", "read", status=RUNNING, body={"xmin": xmin, "snapshot": h.snapshot()})
    builder = TimelineBuilder(all_commits=False)
    builder.index_commits([e for e in h.events if e.source == "db" and e.status == PENDING])
    # Then the read is not linked to a commit it may not have returned
    assert builder.add(read).version_of is None
    # While a builder that saw every commit links it
    assert TimelineBuilder().extend(h.events)[-1].version_txid == h.versions[-1].txid
