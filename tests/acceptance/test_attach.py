"""Attaching a foreign service exactly as the README says: not Django (a stdlib HTTP API), its
own Dramatiq broker and actor, its own database, the client installed on its own. Its
task's commits, broker steps, versioned reads and logged errors reach the timeline while
it runs, and its "flush without commit" bug is named ``stuck``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Stack, http, wait_for
from tests.foreign import kinds, timeline

pytestmark = pytest.mark.acceptance


def test_a_foreign_service_is_attached_and_its_lost_commit_is_named_stuck(
    stack: Stack, service: str
) -> None:
    # Given a job whose worker writes done and closes without committing it
    status, job = http("POST", f"{service}/jobs", {"mode": "flush_without_commit"})
    assert status == 201, job
    # When the end-to-end test polls it for a while
    for _ in range(10):
        status, read = http("GET", f"{service}/jobs/{job['id']}")
        assert status == 200
        time.sleep(0.2)
    assert read["state"] == "working"  # the bug: done never committed
    # Then its whole history reaches the inspector's timeline while the service runs
    wanted = {
        ("db", "insert"),
        ("db", "update"),
        ("broker", "enqueue"),
        ("broker", "start"),
        ("broker", "ack"),
        ("api", "read"),
    }
    seen: dict[str, Any] = {}

    def arrived() -> Any:
        seen.update(timeline(stack, job["id"]))
        return wanted <= kinds(seen) and seen["findings"] and dict(seen)

    try:
        body = wait_for(arrived, 45, what="the foreign task's commits, steps, reads and finding")
    except AssertionError:
        raise AssertionError(
            f"on the timeline: {sorted(kinds(seen))}, findings {seen.get('findings')}; "
            f"missing {sorted(wanted - kinds(seen))}\n" + stack.log()[-3000:]
        ) from None
    commits = [e for e in body["events"] if e["source"] == "db"]
    assert [c["status"] for c in commits] == ["queued", "working"]
    assert [c["body"]["application_name"] for c in commits] == ["foreign-api", "foreign-worker"]
    assert all(isinstance(c["txid"], int) and c["body"]["database"] == "jobs-db" for c in commits)
    reads = [e for e in body["events"] if e["source"] == "api"]
    assert all(r["body"]["xmin"] == commits[-1]["txid"] % 2**32 for r in reads[-3:])
    assert [f["kind"] for f in body["findings"]] == ["stuck"]


def test_a_foreign_workers_swallowed_error_sits_next_to_its_commit(
    stack: Stack, service: str
) -> None:
    # Given a job whose LLM call fails, is logged at WARNING with its traceback, and swallowed
    status, job = http("POST", f"{service}/jobs", {"mode": "swallowed_error"})
    assert status == 201, job
    wait_for(lambda: http("GET", f"{service}/jobs/{job['id']}")[1]["state"] == "done", 15)
    # Then the logged warning, with its traceback, is on the timeline before the commit
    body = wait_for(
        lambda: (
            (b := timeline(stack, job["id"]))
            and ("log", "warning") in kinds(b)
            and any(e["status"] == "done" for e in b["events"] if e["source"] == "db")
            and b
        ),
        30,
        what="the logged warning and the done commit",
    )
    (warning,) = [e for e in body["events"] if e["source"] == "log"]
    assert "LLM call failed" in warning["body"]["message"]
    assert "LLMError: the model timed out" in warning["body"]["exception"]
    completed = next(e for e in body["events"] if e["source"] == "db" and e["status"] == "done")
    assert warning["at"] < completed["at"]
    # And the checker names it with no expectation given: a WARNING with a traceback, then
    # a commit of done (a success of its lifecycle) and an ack in the same attempt
    body = wait_for(
        lambda: (b := timeline(stack, job["id"])) and b["findings"] and b, 15, what="findings"
    )
    assert [f["kind"] for f in body["findings"]] == ["swallowed_error"]
    assert "LLM call failed" in body["findings"][0]["message"]
