"""What the live system records and what the checker makes of it, across real processes."""

from __future__ import annotations

import json

import pytest

from lifecycle.models import Event
from tests.acceptance.test_lab_live import run_until_done
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance


def timeline(stack, task: str, until) -> dict:
    """The task's JSON timeline, once ``until(timeline)`` holds (events arrive by ingest)."""

    def ready():
        status, body = stack.get(f"/api/tasks/{task}/timeline")
        return body if status == 200 and until(body) else None

    return wait_for(ready, 10, 0.2, f"the timeline of {task}")


def test_a_fails_run_leaves_commits_broker_steps_and_reads_in_order(stack, live_db):
    # Given a live run of `fails`
    run = run_until_done(stack, "fails")
    assert run["verdict"] == "pass"

    # When its events have all arrived (the last read is ingested after the verdict)
    def complete(body):
        kinds = {(e["source"], e["kind"]) for e in body["events"]}
        return {("broker", "ack"), ("api", "read"), ("probe", "verdict")} <= kinds

    events = timeline(stack, run["task"], complete)["events"]
    by_source = {}
    # In the timeline's order (each source's time): ids are arrival order, and two
    # processes' events (the API's enqueue, the worker's start) may arrive either way round.
    for e in events:
        by_source.setdefault(e["source"], []).append(e)

    # Then the commits PENDING, RUNNING, FAILED, each with its transaction id, in order
    commits = by_source["db"]
    assert [c["status"] for c in commits] == ["PENDING", "RUNNING", "FAILED"]
    txids = [c["txid"] for c in commits]
    assert all(isinstance(t, int) for t in txids) and txids == sorted(txids)
    assert commits[1]["body"]["application_name"] == "lifecycle-worker"
    # the broker's enqueue, start and ack
    assert [b["kind"] for b in by_source["broker"]] == ["enqueue", "start", "ack"]
    # the API's reads, each naming the version it returned
    reads = by_source["api"]
    assert reads and all(r["body"]["xmin"] in {t % 2**32 for t in txids} for r in reads)
    assert all(r["version_of"] in {c["id"] for c in commits} for r in reads)
    # and the probe's reads, ending on FAILED
    probe_reads = [p for p in by_source["probe"] if p["kind"] == "read"]
    assert probe_reads[-1]["status"] == "FAILED"
    # In time order, the worker started after the enqueue and committed FAILED before its ack
    order = [(e["source"], e["kind"], e["status"]) for e in events]
    assert order.index(("broker", "enqueue", None)) < order.index(("db", "update", "RUNNING"))
    assert order.index(("db", "update", "FAILED")) < order.index(("broker", "ack", None))
    # A clean run has no finding
    _, body = stack.get(f"/api/runs/{run['id']}")
    assert body["findings"] == []


def test_swallowed_error_shows_the_logged_error_next_to_the_completed_commit(stack, live_db):
    run = run_until_done(stack, "swallowed-error")

    def has_log(body):
        return any(e["source"] == "log" for e in body["events"])

    events = timeline(stack, run["task"], has_log)["events"]
    log = next(e for e in events if e["source"] == "log")
    assert log["kind"] == "error"
    assert "input[1] is 'two', not a number" in log["body"]["message"]
    assert "LabError" in log["body"]["exception"]
    assert log["body"]["process_role"] == "worker"
    # Next to it: the worker's COMPLETED commit, right after the error in time
    position = [e["id"] for e in events].index(log["id"])
    following = [e for e in events[position:] if e["source"] == "db"]
    assert following[0]["status"] == "COMPLETED"

    # And the checker says the wrong status was born in the worker's commit
    _, body = stack.get(f"/api/runs/{run['id']}")
    mismatch = [f for f in body["findings"] if f["kind"] == "expectation_mismatch"]
    assert len(mismatch) == 1 and mismatch[0]["cause"] == "committed"
    assert not {f["kind"] for f in body["findings"]} & {"stale_read", "unwritten_read"}
    completed = next(e for e in events if e["source"] == "db" and e["status"] == "COMPLETED")
    assert completed["id"] in mismatch[0]["events"]


def test_the_matrix_catches_every_fault_and_stays_silent_on_clean_runs(stack):
    # A smaller version of `lifecycle matrix` (20 runs each): a run of every lab scenario
    # (the foreign service's run in test_foreign_scenarios, while the service is up).
    from lifecycle.scenarios.catalogue import LAB_FILE, load

    # (replica-read needs a standby this stack is not given: test_replica_and_cache_live)
    lab = [f"--scenario={s.name}" for s in load([LAB_FILE]).scenarios.values() if not s.requires]
    result = stack.manage(
        "lifecycle", "matrix", *lab, "--runs", "1", "--clean-runs", "1", "--json", timeout=400
    )
    matrix = json.loads(result.stdout.strip().splitlines()[-1])
    missed = [row for row in matrix["rows"] if not row["met"]]
    assert result.returncode == 0 and not missed, (missed, result.stderr[-3000:])
    assert {row["scenario"] for row in matrix["rows"]} >= {"succeeds", "redelivery"}


def test_events_are_one_per_committed_change(stack, live_db):
    run = run_until_done(stack, "retry-then-succeeds")
    commits = Event.objects.filter(task_key=run["task"], source="db").order_by("id")
    statuses = [c.status for c in commits]
    # insert, then per attempt RUNNING and (for the two failures) back to PENDING, then done
    assert statuses == [
        "PENDING",
        "RUNNING",
        "PENDING",
        "RUNNING",
        "PENDING",
        "RUNNING",
        "COMPLETED",
    ]
