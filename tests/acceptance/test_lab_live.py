"""The lab and scenario runs, live: daphne, the Dramatiq worker and the probe as real processes."""

from __future__ import annotations

import json
import urllib.request

import pytest

from lifecycle.lab.models import Task
from lifecycle.models import Event, Run
from tests.conftest import wait_for
from tests.integration.test_lab_base_url import FakeLab

pytestmark = pytest.mark.acceptance


def run_until_done(stack, name: str) -> dict:
    status, run = stack.post(f"/api/scenarios/{name}/runs")
    assert status == 201, run
    return wait_run(stack, run["id"])


def wait_run(stack, run_id: int, timeout: float = 40) -> dict:
    def done():
        status, body = stack.get(f"/api/runs/{run_id}")
        return body if body["state"] == "done" else None

    return wait_for(done, timeout, 0.2, f"run {run_id} to finish")


def probe_statuses(task_key: str) -> list[str | None]:
    reads = Event.objects.filter(task_key=task_key, source="probe", kind="read").order_by("id")
    return [e.status for e in reads]


def committed_statuses(task_key: str) -> list[str | None]:
    commits = Event.objects.filter(task_key=task_key, source="db").order_by("id")
    return [e.status for e in commits]


def test_a_task_that_must_fail_is_read_as_failed_over_http(stack):
    # Given a task whose input the worker cannot process
    status, task = stack.post("/lab/api/tasks", {"config": {"input": [1, "two", 3]}})
    assert status == 201 and task["status"] == "PENDING"

    # When the end-to-end test polls it over HTTP
    def terminal():
        _, body = stack.get(f"/lab/api/tasks/{task['id']}")
        return body if body["status"] in {"COMPLETED", "FAILED"} else None

    final = wait_for(terminal, 15, 0.1, "a terminal status")

    # Then it reads FAILED, with the worker's error
    assert final["status"] == "FAILED"
    assert "input[1] is 'two', not a number" in final["error"]


def test_a_run_answers_with_its_task_and_url_and_passes(stack, live_db):
    status, run = stack.post("/api/scenarios/succeeds/runs")
    assert status == 201
    assert run["task"] and run["url"].endswith(f"/runs/{run['id']}")
    assert run["state"] in {"running", "done"} and run["expected"] == "COMPLETED"
    done = wait_run(stack, run["id"])
    assert (done["verdict"], done["observed"]) == ("pass", "COMPLETED")
    # The run's reads are stored, each with its send and receive times.
    reads = Event.objects.filter(task_key=run["task"], source="probe", kind="read")
    assert reads.count() >= 1
    assert all(r.body["sent_at"] <= r.body["received_at"] for r in reads)


def test_resubmit_starts_a_new_run_linked_to_the_old_one(stack, live_db):
    first = run_until_done(stack, "swallowed-error")
    assert first["verdict"] == "fail"
    status, second = stack.post(f"/api/runs/{first['id']}/resubmit")
    assert status == 201
    assert second["scenario"] == "swallowed-error" and second["resubmit_of"] == first["id"]
    assert second["task"] != first["task"]
    _, first_again = stack.get(f"/api/runs/{first['id']}")
    assert first_again["resubmits"] == [second["id"]]
    wait_run(stack, second["id"])


def test_a_run_goes_to_the_servers_own_address_whatever_its_host_header_says(stack, live_db):
    # Given the stack as `lifecycle up` starts it without LAB_BASE_URL, and an attacker's
    # server on another port of this machine (ALLOWED_HOSTS ignores ports)
    assert "LAB_BASE_URL" not in stack.env
    attacker = FakeLab()
    try:
        # When a runner starts a run with a Host header that names the attacker's port
        request = urllib.request.Request(
            stack.base_url + "/api/scenarios/succeeds/runs", data=b"{}", method="POST"
        )
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {stack.token}")
        request.add_header("Host", f"localhost:{attacker.port}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 201
            run = json.loads(answer.read())

        # Then the probe went to the web server's own address and the real lab passed it
        done = wait_run(stack, run["id"])
        assert (done["verdict"], done["observed"]) == ("pass", "COMPLETED")
        assert Run.objects.get(pk=run["id"]).base_url == stack.base_url
        assert Task.objects.filter(pk=run["task"]).exists()
        assert attacker.requests == []
    finally:
        attacker.close()


# Runs of fault scenarios whose symptom is checked below, started together to save time.
CONCURRENT_FAULTS = [
    "swallowed-error",
    "missing-commit",
    "overwrite-after-failure",
    "cached-read",
    "snapshot-read",
    "enqueue-before-commit",
]


@pytest.fixture(scope="module")
def fault_runs(stack, django_db_blocker):
    started = {}
    for name in CONCURRENT_FAULTS:
        status, run = stack.post(f"/api/scenarios/{name}/runs")
        assert status == 201, run
        started[name] = run["id"]
    return {name: wait_run(stack, run_id, 60) for name, run_id in started.items()}


def test_swallowed_error_commits_completed_although_the_work_failed(fault_runs, live_db):
    run = fault_runs["swallowed-error"]
    assert (run["verdict"], run["observed"]) == ("fail", "COMPLETED")
    task = Task.objects.get(pk=run["task"])
    assert task.status == "COMPLETED" and task.output is None and task.error == ""
    assert "FAILED" not in committed_statuses(run["task"])


def test_missing_commit_leaves_the_task_running(fault_runs, live_db):
    run = fault_runs["missing-commit"]
    assert (run["verdict"], run["observed"]) == ("fail", "RUNNING")
    assert Task.objects.get(pk=run["task"]).status == "RUNNING"
    assert committed_statuses(run["task"]) == ["PENDING", "RUNNING"]


def test_overwrite_after_failure_commits_failed_then_completed(fault_runs, live_db):
    run = fault_runs["overwrite-after-failure"]
    assert (run["verdict"], run["observed"]) == ("fail", "COMPLETED")
    assert committed_statuses(run["task"]) == ["PENDING", "RUNNING", "FAILED", "COMPLETED"]


@pytest.mark.parametrize("name", ["cached-read", "snapshot-read"])
def test_stale_reads_never_see_the_committed_completion(fault_runs, live_db, name):
    run = fault_runs[name]
    assert run["verdict"] == "fail"
    # The database holds COMPLETED, yet every read the probe made saw an older status.
    assert Task.objects.get(pk=run["task"]).status == "COMPLETED"
    seen = probe_statuses(run["task"])
    assert len(seen) > 10 and "COMPLETED" not in seen
    assert len(set(seen)) == 1


def test_enqueue_before_commit_loses_the_message(fault_runs, live_db):
    run = fault_runs["enqueue-before-commit"]
    assert (run["verdict"], run["observed"]) == ("fail", "PENDING")
    task = Task.objects.get(pk=run["task"])
    assert (task.status, task.executions) == ("PENDING", 0)


def test_redelivery_runs_the_task_twice(stack, fault_runs, live_db):
    # After the others: the worker process dies on purpose, which would disturb them.
    run = run_until_done(stack, "redelivery")
    task = Task.objects.get(pk=run["task"])
    assert task.executions == 2
    assert committed_statuses(run["task"]).count("RUNNING") == 2
    assert "worker exited with status 3; restarting" in stack.log()
    # And the dying worker's last warning reached the timeline before it exited
    last_words = Event.objects.filter(task_key=run["task"], source="log", kind="warning")
    assert any("dies before acking" in e.body.get("message", "") for e in last_words)


def test_the_cli_exits_zero_when_the_run_passes_and_non_zero_when_it_fails(stack, live_db):
    passing = stack.manage("lifecycle", "run", "succeeds")
    assert passing.returncode == 0, passing.stderr
    assert "PASS expected COMPLETED, observed COMPLETED" in passing.stdout
    assert "1 passed, 0 failed" in passing.stdout

    failing = stack.manage("lifecycle", "run", "swallowed-error", "--json")
    assert failing.returncode == 1
    result = json.loads(failing.stdout.strip().splitlines()[-1])
    assert (result["verdict"], result["expected"], result["observed"]) == (
        "fail",
        "FAILED",
        "COMPLETED",
    )
    assert Run.objects.get(pk=result["id"]).verdict == "fail"


def test_the_cli_refuses_an_unknown_scenario(stack):
    result = stack.manage("lifecycle", "run", "nope")
    assert result.returncode == 2
    assert "unknown scenario 'nope'" in result.stderr
