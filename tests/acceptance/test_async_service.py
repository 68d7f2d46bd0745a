"""The async foreign service, built like the seed's (FastAPI + SQLAlchemy async, ``async def``
actors on Dramatiq's AsyncIO middleware, its own database), attached through the README
alone: each of its scenarios gets the findings of its bug, the same bug sent straight to its
API is named with no scenario at all, and its own pytest run's report names the swallowed
error, with the permalink and without the runner's token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lifecycle.history import XID_WRAP
from tests import foreign
from tests.acceptance.test_foreign_scenarios import (
    findings_include,
    in_group,
    maintainer_checked,
    run_each,
)
from tests.conftest import Stack, http, wait_for
from tests.foreign import failing_report, service_pytest, timeline
from tests.foreign_async import ASYNC_SERVICE

pytestmark = pytest.mark.acceptance

OURS = {
    "tasks-ok",
    "tasks-swallowed-error",
    "tasks-flush-without-commit",
    "tasks-identity-map",
    "tasks-savepoint-snapshot",
}

# What a failing assertion's history shows of each event's body
TOLD = ("xmin", "snapshot", "message_id", "attempt", "thread")


def told(stack: Stack, run_id: int) -> str:
    """A run's history, for a failing assertion's message."""
    return foreign.told(stack, run_id, TOLD)


def settled(stack: Stack, run_id: int, wanted: set[tuple[str, str | None]]) -> dict[str, Any]:
    try:
        return findings_include(stack, run_id, wanted)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{told(stack, run_id)}") from None


def test_each_scenario_of_the_async_service_gets_the_findings_of_its_bug(
    stack: Stack, async_service: str
) -> None:
    # Given the service's scenarios in the catalogue
    assert in_group(stack, "Tasks service (async)") == OURS

    # When each is started through the JSON API, all at once
    started, runs = run_each(stack, OURS, 60)

    # Then the warning an async actor's LLM client swallowed is tied to its attempt
    swallowed = settled(
        stack,
        started["tasks-swallowed-error"],
        {("swallowed_error", None), ("expectation_mismatch", "committed")},
    )
    assert (swallowed["expected"], swallowed["observed"]) == ("FAILED", "COMPLETED")
    sentence = next(f for f in swallowed["findings"] if f["kind"] == "swallowed_error")["message"]
    assert "logged WARNING" in sentence and "LLM completion failed" in sentence, sentence
    assert "committed COMPLETED in transaction" in sentence

    # And the flush without a commit leaves the task stuck
    flushed = settled(stack, started["tasks-flush-without-commit"], {("stuck", None)})
    assert (flushed["verdict"], flushed["observed"]) == ("fail", "RUNNING")

    # And the identity map's object is named by the reads' snapshots
    cached = settled(
        stack,
        started["tasks-identity-map"],
        {("stale_read", "cached_object")},
    )
    stale = next(f for f in cached["findings"] if f["kind"] == "stale_read")["message"]
    assert "with no version of the row" in stale and "identity map" in stale, stale

    # And the reads of a row written inside savepoints are tied to their commits: the
    # stale ones named, each linked to the commit whose version it returned
    snapshot = settled(stack, started["tasks-savepoint-snapshot"], {("stale_read", "old_snapshot")})
    assert snapshot["verdict"] == "pass"
    events = timeline(stack, snapshot["task"])["events"]
    commits = {e["id"]: e for e in events if e["source"] == "db"}
    reads = [e for e in events if e["source"] == "api" and e["body"].get("xmin") is not None]
    running = [r for r in reads if r["status"] == "RUNNING"]
    assert running, reads
    txids = {c["txid"] % XID_WRAP for c in commits.values()}
    for read in running:
        assert read["body"]["xmin"] not in txids  # a savepoint's xid, no commit's
        linked = commits[read["version_of"]]
        assert (linked["status"], linked["kind"]) == ("RUNNING", "update")

    # And the clean scenario has no finding once its last events are in
    ok = runs["tasks-ok"]
    assert (ok["verdict"], ok["observed"]) == ("pass", "COMPLETED")
    wait_for(
        lambda: maintainer_checked(ok["task"]), 30, what="the maintainer's check of the clean run"
    )
    assert stack.get(f"/api/runs/{ok['id']}")[1]["findings"] == []


def test_the_same_bug_sent_straight_to_the_api_is_named_without_a_scenario(
    stack: Stack, async_service: str
) -> None:
    # When a task with the bug is submitted to the service itself: no scenario, no expectation
    status, task = http("POST", f"{async_service}/tasks", {"mode": "swallowed_error"})
    assert status == 201
    # Then its timeline names the swallowed error all the same
    body = wait_for(
        lambda: (
            (t := timeline(stack, task["id"]))
            and any(f["kind"] == "swallowed_error" for f in t["findings"])
            and t
        ),
        30,
        what="the swallowed error on the bare task",
    )
    assert body.get("expected") is None
    assert [f["kind"] for f in body["findings"]] == ["swallowed_error"]


def test_its_own_pytest_report_names_the_swallowed_error_and_keeps_the_token(
    stack: Stack, async_service: str, client_venv: Path
) -> None:
    # When the service runs the seed's own test, with the plugin, showing every local
    env = {
        "TASKS_API_URL": async_service,
        "LIFECYCLE_URL": stack.base_url,
        "LIFECYCLE_TOKEN": stack.token,
    }
    done = service_pytest(
        client_venv, ASYNC_SERVICE, "test_tasks_e2e.py", env, "--showlocals", "-rA"
    )
    # Then it fails, and its report has the permalink and the swallowed error's sentence
    out, section, _ = failing_report(stack, done, r"\S+")
    assert "logged WARNING" in section and "so the error was swallowed" in section, out
    # And the fixture was shown, but never the runner's token
    assert "token='***'" in out, out
