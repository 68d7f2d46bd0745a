"""The foreign service's scenario file (``foreign_service/scenarios.toml``): its lifecycle
(queued, working, done, errored) and its three scenarios, run from the dashboard's JSON API
and CLI like the lab's, with the findings their bugs must produce; an edited body on one of
them; and the service's own pytest suite, whose seed-like test fails with the timeline's
permalink and the swallowed_error sentence in its report."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, wait_for
from tests.foreign import SERVICE, service_pytest

pytestmark = pytest.mark.acceptance

OURS = {"jobs-ok", "jobs-swallowed-error", "jobs-flush-without-commit"}
REPLICA = "jobs-replica-read"  # needs a standby: run by its own test


def maintainer_checked(task: str) -> bool:
    """Whether the maintainer's stored check of the task covers every event it has."""
    import psycopg

    from lifecycle.runtime.database import conninfo

    with psycopg.connect(conninfo()) as conn:
        row = conn.execute(
            "SELECT c.event_count = (SELECT count(*) FROM lifecycle_event e"
            " WHERE e.task_key = c.task_key) FROM lifecycle_task_check c WHERE c.task_key = %s",
            [task],
        ).fetchone()
    return bool(row and row[0])


def done_run(stack: Stack, run_id: int, timeout: float = 40) -> dict[str, Any]:
    return wait_for(
        lambda: (r := stack.get(f"/api/runs/{run_id}")[1])["state"] == "done" and r,
        timeout,
        what=f"run {run_id}'s verdict",
    )


def catalogue(stack: Stack) -> dict[str, str]:
    """The scenario panel's catalogue: each scenario's group, by the scenario's name."""
    status, listing = stack.get("/api/scenarios")
    assert status == 200
    return {s["name"]: s["group"] for s in listing["scenarios"]}


def in_group(stack: Stack, group: str) -> set[str]:
    """The names of the catalogue's scenarios in ``group``."""
    return {n for n, g in catalogue(stack).items() if g == group}


def run_each(
    stack: Stack, names: set[str], timeout: float = 40
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Each scenario started through the JSON API, all at once, and each run once it has its
    verdict: name -> run id, and name -> run."""
    started = start_each(stack, names)
    return started, {name: done_run(stack, run_id, timeout) for name, run_id in started.items()}


def start_each(stack: Stack, names: set[str]) -> dict[str, int]:
    """Start each scenario through the JSON API, all at once: name -> run id."""
    started = {}
    for name in sorted(names):
        status, run = stack.post(f"/api/scenarios/{name}/runs")
        assert status == 201, run
        started[name] = run["id"]
    return started


def found(run: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(f["kind"], f["cause"]) for f in run["findings"]}


def findings_include(
    stack: Stack, run_id: int, wanted: set[tuple[str, str | None]]
) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def there() -> Any:
        seen.update(stack.get(f"/api/runs/{run_id}")[1])
        return wanted <= found(seen) and dict(seen)

    try:
        return wait_for(there, 20, what=f"run {run_id}'s findings")
    except AssertionError:
        raise AssertionError(
            f"run {run_id}: wanted {wanted}, found {seen.get('findings')}"
        ) from None


def test_the_services_scenarios_run_from_the_api_with_the_findings_of_their_bugs(
    stack: Stack, service: str
) -> None:
    # Given the scenario panel's catalogue: the lab's scenarios and the service's
    assert in_group(stack, "Jobs service") == OURS | {REPLICA}
    assert catalogue(stack)["succeeds"] == "The lab"

    # When each of the service's scenarios is started through the JSON API, all at once
    started, runs = run_each(stack, OURS)

    # Then the swallowed error is named twice: the swallowed error itself, and the
    # expectation (errored) missed because the worker committed done
    swallowed = findings_include(
        stack,
        started["jobs-swallowed-error"],
        {("swallowed_error", None), ("expectation_mismatch", "committed")},
    )
    assert runs["jobs-swallowed-error"]["verdict"] == "fail"
    assert (swallowed["expected"], swallowed["observed"]) == ("errored", "done")
    assert swallowed["body"] == {"mode": "swallowed_error"}
    sentence = next(f for f in swallowed["findings"] if f["kind"] == "swallowed_error")["message"]
    assert "LLM call failed" in sentence and "committed done in transaction" in sentence
    # And the write that never committed leaves the job stuck in working
    flushed = findings_include(stack, started["jobs-flush-without-commit"], {("stuck", None)})
    assert (flushed["verdict"], flushed["observed"]) == ("fail", "working")
    assert "left it working, not in a terminal status" in flushed["findings"][0]["message"]
    # And the clean scenario passes with no finding, once its last events are in
    ok = runs["jobs-ok"]
    assert (ok["verdict"], ok["observed"]) == ("pass", "done")
    wait_for(
        lambda: maintainer_checked(ok["task"]), 30, what="the maintainer's check of the clean run"
    )
    assert stack.get(f"/api/runs/{ok['id']}")[1]["findings"] == []

    # When the clean run is resubmitted with an edited body
    status, edited = stack.post(
        f"/api/runs/{ok['id']}/resubmit", {"body": {"mode": "swallowed_error"}}
    )
    assert status == 201, edited
    # Then it is a new run, linked to the old one, that ran the edited body and got its bug
    assert edited["resubmit_of"] == ok["id"] and edited["body"] == {"mode": "swallowed_error"}
    done_run(stack, edited["id"])
    findings_include(stack, edited["id"], {("swallowed_error", None)})
    assert edited["id"] in stack.get(f"/api/runs/{ok['id']}")[1]["resubmits"]
    # And a body that is not JSON starts nothing and says why
    before = stack.get(f"/api/runs/{ok['id']}")[1]["resubmits"]
    status, refused = stack.post(f"/api/runs/{ok['id']}/resubmit", raw=b'{"body": }')
    assert status == 400 and "the request is not JSON" in refused["error"], refused
    assert stack.get(f"/api/runs/{ok['id']}")[1]["resubmits"] == before


def test_the_cli_runs_the_services_scenarios_and_the_matrix_covers_them(
    stack: Stack, service: str
) -> None:
    # When one of them is run from the terminal
    done = stack.manage("lifecycle", "run", "jobs-swallowed-error", "--json", timeout=60)
    # Then its verdict is a failure, with the exit code a CI job needs
    assert done.returncode == 1, done.stderr
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert (run["expected"], run["observed"], run["verdict"]) == ("errored", "done", "fail")

    # When the matrix runs the three of them
    args = [f"--scenario={name}" for name in sorted(OURS)]
    done = stack.manage(
        "lifecycle", "matrix", *args, "--runs=2", "--clean-runs=2", "--json", timeout=180
    )
    # Then every target is met: the bugs' findings in each run, nothing in the clean ones
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["scenario"]: row for row in json.loads(done.stdout)["rows"]}
    assert set(rows) == OURS and all(row["met"] for row in rows.values()), rows
    assert rows["jobs-swallowed-error"]["counts"]["swallowed_error"] == 2


def test_the_services_api_reading_a_standby_gets_the_replica_finding_with_no_change_for_it(
    standby: str, stack: Stack, service: str
) -> None:
    # Given the service's API polled on its replica path: read_row on a hot standby of its
    # own database, which replays 1 s behind (the checker knows nothing of this service)
    # When its replica scenario runs
    status, run = stack.post(f"/api/scenarios/{REPLICA}/runs")
    assert status == 201, run
    done = done_run(stack, run["id"])

    # Then it passes, and its reads are named stale because the replica lagged
    assert (done["verdict"], done["observed"]) == ("pass", "done"), done
    found = findings_include(stack, run["id"], {("stale_read", "replica")})
    replica = next(f for f in found["findings"] if f["cause"] == "replica")
    assert "from a standby" in replica["message"]
    assert "Read your own writes from the primary" in replica["fix"]
    assert {(f["kind"], f["cause"]) for f in found["findings"]} == {("stale_read", "replica")}


def jobs_pytest(
    client_venv: Path, stack: Stack, service: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {"JOBS_API_URL": service, "LIFECYCLE_URL": stack.base_url, "LIFECYCLE_TOKEN": stack.token}
    return service_pytest(client_venv, SERVICE, "test_jobs_e2e.py", env, *args)


def test_the_plugin_puts_the_permalink_and_the_finding_in_the_failing_tests_report(
    stack: Stack, service: str, client_venv: Path
) -> None:
    # When the service runs its seed-like test and its clean one, with the plugin
    done = jobs_pytest(client_venv, stack, service, "-k", "expect_failure or good_job")
    out = done.stdout
    print(out)  # the report as the service's developer sees it (shown when this test fails)
    # Then the seed-like test fails, and its report says what the inspector saw
    assert done.returncode == 1, out + done.stderr
    assert "1 failed, 1 passed" in out, out
    section = out[out.index("lifecycle") :]
    task = re.search(rf"task (\S+): ({re.escape(stack.base_url)}/tasks/\S+)", section)
    assert task, out
    assert "swallowed_error: Attempt 1 of message" in section, out
    assert "so the error was swallowed" in section, out
    assert "fix: Let the exception reach the actor" in section, out
    assert "expectation_mismatch (committed)" in section, out
    assert f"{task[2]}#event-" in section
    # And the permalink opens the task, judged by the expectation the test stated
    status, page = stack.get(f"/api/tasks/{task[1]}/timeline")
    assert status == 200 and page["expected"] == "errored"
    assert {"swallowed_error", "expectation_mismatch"} <= {f["kind"] for f in page["findings"]}
    assert any(e["source"] == "probe" and e["kind"] == "expect" for e in page["events"])

    # When a test that passes on its own watches a task with a finding
    relaxed = jobs_pytest(client_venv, stack, service, "-k", "still_reads_done")
    strict = jobs_pytest(
        client_venv, stack, service, "-k", "still_reads_done", "--lifecycle-strict"
    )
    # Then it passes, unless the run is strict
    assert relaxed.returncode == 0, relaxed.stdout
    assert strict.returncode == 1, strict.stdout
    assert "--lifecycle-strict: the inspector found" in strict.stdout
    assert "swallowed_error" in strict.stdout
