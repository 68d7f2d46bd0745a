"""Two runs' lifecycles as steps, aligned, and the first point where they diverge.

Each test writes a run's history the way the lab records it (the trigger's commits, the
broker middleware's steps, the API's and the probe's reads, the probe's verdict) and
asserts on what the compare page would show: the rows, their states and the sentence.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lifecycle.timeline.compare import Step, align, divergence_sentence, lifecycle_steps
from tests.histories import Run

pytestmark = pytest.mark.unit


def steps_of(run: Run) -> list[Step]:
    return lifecycle_steps(run.events)


def fails(polls: int = 8, first_id: int = 100) -> Run:
    """The clean `fails` scenario: the worker commits FAILED; every poll reads FAILED."""
    h = Run(first_id=first_id).submit().commit("PENDING").broker("enqueue", "start")
    h.commit("RUNNING").commit("FAILED").broker("ack")
    return h.polls(polls).verdict("FAILED", "FAILED")


def overwrite_after_failure(polls: int = 8, first_id: int = 500) -> Run:
    """A cleanup path commits COMPLETED over FAILED before the ack."""
    h = Run(first_id=first_id).submit().commit("PENDING").broker("enqueue", "start")
    h.commit("RUNNING").commit("FAILED").polls(1).commit("COMPLETED").broker("ack")
    return h.polls(polls).verdict("FAILED", "COMPLETED")


def states(rows) -> list[str]:
    return [row.state for row in rows]


# Steps


def test_consecutive_reads_of_one_status_are_one_step_with_their_first_and_last_event():
    h = Run().submit().commit("PENDING").polls(3).commit("RUNNING").polls(2)
    steps = steps_of(h)

    assert [s.label for s in steps] == [
        "submit",
        "created PENDING",
        "read PENDING ×6",
        "PENDING → RUNNING",
        "read RUNNING ×4",
    ]
    reads = steps[2]
    assert reads.token == ("reads", "PENDING") and reads.count == 6
    assert reads.sources == {"probe": 3, "api": 3} and reads.detail == "3 probe · 3 API"
    assert (reads.first_id, reads.last_id) == (h.events[2].id, h.events[7].id)


def test_reads_of_another_status_start_a_new_step_even_without_a_commit_between():
    h = Run().submit().commit("RUNNING")
    h.polls(2, "RUNNING").polls(1, "PENDING").polls(1, "RUNNING")

    labels = [s.label for s in steps_of(h)][2:]
    assert labels == ["read RUNNING ×4", "read PENDING ×2", "read RUNNING ×2"]


def test_each_step_keeps_its_offset_from_the_runs_first_event():
    h = Run().submit().commit("PENDING")  # 10 ms after the submit
    h.polls(2)  # reads at +110, +115, +215, +220

    submit, created, reads = steps_of(h)
    assert (submit.offset_ms, created.offset_ms) == (0, 10)
    assert (reads.offset_ms, reads.end_ms) == (110, 220)
    assert reads.offset_text == "+110 ms"


def test_a_commit_is_its_transition_a_broker_step_its_kind_a_log_its_level():
    h = Run().commit("PENDING").commit("RUNNING").broker("retry").log("warning")
    created, running, retry, warning = steps_of(h)

    assert created.token == ("db", "insert", None, "PENDING")
    assert running.token == ("db", "update", "PENDING", "RUNNING")
    assert running.phrase == "committed RUNNING" and running.detail.endswith("lab-worker")
    assert retry.token == ("broker", "retry") and retry.phrase == "scheduled a retry"
    assert warning.token == ("log", "warning") and warning.label == "WARNING logged"


# Alignment


def test_two_identical_lifecycles_align_with_no_divergence():
    comparison = align(steps_of(fails()), steps_of(fails(first_id=900)))

    assert comparison.divergence is None
    assert set(states(comparison.rows)) == {"same"}
    assert [r.left.label for r in comparison.rows] == [r.right.label for r in comparison.rows]
    assert divergence_sentence(comparison, 12, 15) == "The runs follow the same lifecycle: 9 steps."


def test_runs_that_polled_a_different_number_of_times_still_align():
    comparison = align(steps_of(fails(polls=3)), steps_of(fails(polls=17)))

    assert comparison.divergence is None and set(states(comparison.rows)) == {"same"}
    reads = next(r for r in comparison.rows if r.left.lane == "reads")
    assert (reads.left.count, reads.right.count) == (6, 34)


def test_a_failing_overwrite_diverges_exactly_at_the_extra_completed_commit():
    passing, failing = fails(), overwrite_after_failure()
    comparison = align(steps_of(passing), steps_of(failing))

    row = comparison.divergence
    assert row is not None
    assert row.left is None and row.right is not None
    assert row.right.token == ("db", "update", "FAILED", "COMPLETED")
    completed = next(e for e in failing.events if e.status == "COMPLETED" and e.source == "db")
    assert row.right.first_id == completed.id
    # Everything before it is the same lifecycle (a poll that caught FAILED is only timing).
    assert set(states(comparison.rows[: row.number - 1])) <= {"same", "timing"}
    assert divergence_sentence(comparison, 12, 15) == (
        f"The runs diverge at step {row.number}: run 15 committed COMPLETED; "
        "run 12 has no such step."
    )


def test_two_different_commits_in_the_same_place_are_named_side_by_side():
    swallowed = Run().submit().commit("PENDING").broker("enqueue", "start").commit("RUNNING")
    swallowed.commit("COMPLETED").broker("ack").polls(5).verdict("FAILED", "COMPLETED")
    comparison = align(steps_of(fails()), steps_of(swallowed))

    row = comparison.divergence
    assert row is not None and row.left is not None and row.right is not None
    assert divergence_sentence(comparison, 12, 15) == (
        f"The runs diverge at step {row.number}: run 12 committed FAILED where run 15 "
        "committed COMPLETED."
    )


def test_the_same_new_status_from_another_old_one_is_said_with_both():
    # Histories that start mid-lifecycle, as a task attached after it was created would.
    a = Run(attached="RUNNING").commit("FAILED")
    b = Run(attached="COMPLETED").commit("FAILED")
    comparison = align(steps_of(a), steps_of(b))

    assert divergence_sentence(comparison, 1, 2) == (
        "The runs diverge at step 1: run 1 committed RUNNING → FAILED where run 2 committed "
        "COMPLETED → FAILED."
    )


def test_divergence_at_the_very_first_step():
    a = Run().commit("PENDING").broker("enqueue")
    b = Run().commit("RUNNING").broker("enqueue")
    comparison = align(steps_of(a), steps_of(b))

    assert comparison.divergence is comparison.rows[0]
    assert comparison.divergence.number == 1
    assert divergence_sentence(comparison, 1, 2) == (
        "The runs diverge at step 1: run 1 created the row as PENDING where run 2 created "
        "the row as RUNNING."
    )


def test_divergence_at_the_very_end_when_one_run_has_one_more_step():
    a, b = fails(), fails()
    b.commit("COMPLETED")  # a late writer, after the verdict
    comparison = align(steps_of(a), steps_of(b))

    assert comparison.divergence is comparison.rows[-1]
    assert comparison.divergence.left is None
    assert states(comparison.rows[:-1]) == ["same"] * (len(comparison.rows) - 1)


def test_divergence_only_in_the_verdict():
    comparison = align(steps_of(fails()), steps_of(fails().verdict("FAILED", "COMPLETED")))

    assert comparison.divergence is not None and comparison.divergence.right.lane == "probe"


def test_nothing_to_compare():
    comparison = align([], [])
    assert comparison.rows == [] and comparison.divergence is None
    assert divergence_sentence(comparison, 1, 2) == "Neither run has recorded an event yet."

    one_sided = align(steps_of(fails()), [])
    assert one_sided.divergence is one_sided.rows[0]
    assert all(row.right is None for row in one_sided.rows)


# What is only timing


def test_a_poll_that_caught_the_task_running_in_one_run_only_is_timing():
    a = Run().submit().commit("PENDING").commit("RUNNING").polls(1).commit("FAILED").polls(3)
    b = Run().submit().commit("PENDING").commit("RUNNING").commit("FAILED").polls(3)
    comparison = align(steps_of(a), steps_of(b))

    assert comparison.divergence is None
    timing = [row for row in comparison.rows if row.state == "timing"]
    assert len(timing) == 1 and timing[0].left.label == "read RUNNING ×2"
    assert "timing" in divergence_sentence(comparison, 1, 2)


def test_a_probe_read_sent_before_a_commit_and_answered_after_it_is_timing():
    # a's probe asked 100 ms before COMPLETED was written and got its answer 150 ms later
    a = Run().submit().commit("PENDING").commit("RUNNING")
    answered_late = {"latency_ms": 150.0, "http_status": 200}
    a.history.add("probe", "read", status="COMPLETED", after_ms=100, body=answered_late)
    a.commit("COMPLETED", after_ms=100).polls(3)
    b = Run().submit().commit("PENDING").commit("RUNNING").commit("COMPLETED").polls(3)
    assert align(steps_of(a), steps_of(b)).divergence is None

    # Answered before the commit was written, it could not have seen COMPLETED.
    a.events[3] = replace(a.events[3], body={"latency_ms": 5.0})
    assert align(steps_of(a), steps_of(b)).divergence is not None


def test_a_stale_read_in_one_run_only_is_a_divergence():
    # b's API keeps answering PENDING long after RUNNING and FAILED committed
    a = Run().submit().commit("PENDING").commit("RUNNING").commit("FAILED").polls(3)
    b = Run().submit().commit("PENDING").commit("RUNNING").commit("FAILED")
    b.polls(3, "PENDING").polls(3)
    comparison = align(steps_of(a), steps_of(b))

    row = comparison.divergence
    assert row is not None and row.right is not None and row.right.status == "PENDING"
    assert "run 2 read PENDING" in divergence_sentence(comparison, 1, 2)


def test_reads_of_different_statuses_side_by_side_differ_when_one_is_stale():
    # Both polled once mid-way; a's read what was committed, b's snapshot was older.
    a = Run().submit().commit("PENDING").commit("RUNNING").polls(3).commit("COMPLETED")
    b = Run().submit().commit("PENDING").commit("RUNNING").polls(3, "PENDING")
    b.commit("COMPLETED")
    comparison = align(steps_of(a), steps_of(b))

    assert comparison.divergence is not None
    assert divergence_sentence(comparison, 1, 2) == (
        f"The runs diverge at step {comparison.divergence.number}: run 1 read RUNNING where "
        "run 2 read PENDING."
    )


def test_enqueue_and_start_stamped_in_the_other_order_are_timing():
    a = Run().submit().commit("PENDING").broker("enqueue", "start").commit("RUNNING")
    b = Run().submit().commit("PENDING").broker("start", "enqueue").commit("RUNNING")
    comparison = align(steps_of(a), steps_of(b))

    assert comparison.divergence is None
    assert states(comparison.rows).count("timing") == 2


def test_retried_lifecycles_line_up_attempt_by_attempt_despite_an_early_poll():
    def retried(early_poll: bool) -> Run:
        h = Run().submit().commit("PENDING").broker("enqueue")
        if early_poll:
            h.polls(1)
        for _ in range(2):
            h.broker("start").commit("RUNNING").commit("PENDING").log().broker("fail", "retry")
            h.polls(8)
        h.broker("start").commit("RUNNING").commit("COMPLETED").broker("ack").polls(10)
        return h.verdict("COMPLETED", "COMPLETED")

    comparison = align(steps_of(retried(True)), steps_of(retried(False)))

    assert comparison.divergence is None
    starts = [row for row in comparison.rows if row.left and row.left.token == ("broker", "start")]
    assert len(starts) == 3 and all(row.same for row in starts)


def test_a_read_sent_before_the_overwrite_and_answered_after_it_does_not_hide_the_commit():
    # The failing run's probe asked 5 ms before the late writer wrote COMPLETED over FAILED
    # and got COMPLETED 20 ms later: stamped at its request, the read comes first in time,
    # but what diverges is the commit it saw (a race of the browser test of comparing runs)
    passing = fails()
    failing = Run(first_id=500).submit().commit("PENDING").broker("enqueue", "start")
    failing.commit("RUNNING").commit("FAILED").broker("ack").polls(1)
    answered_late = {"latency_ms": 20.0, "http_status": 200}
    failing.history.add("probe", "read", status="COMPLETED", after_ms=100, body=answered_late)
    failing.commit("COMPLETED", after_ms=5).polls(6).verdict("FAILED", "COMPLETED")
    steps = steps_of(failing)
    commit = next(
        i for i, s in enumerate(steps) if s.token == ("db", "update", "FAILED", "COMPLETED")
    )
    assert steps[commit + 1].label == "read COMPLETED ×13"  # the early read, then the polls

    comparison = align(steps_of(passing), steps)
    row = comparison.divergence
    assert row is not None and row.left is None
    assert row.right is not None and row.right.token == ("db", "update", "FAILED", "COMPLETED")
    assert divergence_sentence(comparison, 12, 15).startswith(
        f"The runs diverge at step {row.number}: run 15 committed COMPLETED;"
    )


def test_a_read_of_a_status_committed_after_its_answer_stays_before_the_commit():
    # Answered 5 ms after it was sent and 100 ms before COMPLETED was written (past the
    # tolerance): it cannot have seen that commit, and stays where it was stamped
    run = Run().submit().commit("PENDING").commit("RUNNING")
    run.history.add("probe", "read", status="COMPLETED", after_ms=10, body={"latency_ms": 5.0})
    run.commit("COMPLETED", after_ms=100)
    assert [s.label for s in steps_of(run)][-2:] == ["read COMPLETED", "RUNNING → COMPLETED"]


@pytest.mark.parametrize("latency", [5.0, 60_000, float("nan"), float("inf"), 1e308, -1e308, True])
def test_a_long_history_of_stale_reads_is_made_steps_in_linear_time(latency):
    # 20,000 reads of a status the row no longer holds, with no commit after them, each
    # saying how long it was on its way (a number an observed system sent: any, up to the
    # 60 s believed): each looks up the commit it may have seen, never the history after it
    class Counted(list):
        looked = 0

        def __getitem__(self, index):
            Counted.looked += 1
            return super().__getitem__(index)

    run = Run().submit().commit("PENDING").commit("RUNNING").polls(10_000, "PENDING")
    run.events[:] = [
        replace(e, body={**e.body, "latency_ms": latency}) if e.kind == "read" else e
        for e in run.events
    ]
    steps = lifecycle_steps(Counted(run.events))
    assert steps[-1].label == "read PENDING ×20000"
    assert Counted.looked < 5 * len(run.events)  # to the end of the history each time: 2e8
