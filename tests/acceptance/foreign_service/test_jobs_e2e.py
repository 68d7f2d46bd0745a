"""The jobs service's own end-to-end tests, like the seed's test_submit_task_and_expect_failure:
submit a job, poll it until it is finished, check its final state.

With the lifecycle client installed, the ``lifecycle`` fixture is there: one line per test
watches the job, and a failing test's report carries what the inspector saw of it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any

API = os.environ["JOBS_API_URL"]


def call(method: str, path: str, payload: Any = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{API}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def finished_state(job_id: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = call("GET", f"/jobs/{job_id}")["state"]
        if state in ("done", "errored") or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def test_submit_task_and_expect_failure(lifecycle: Any) -> None:
    job = call("POST", "/jobs", {"mode": "swallowed_error"})
    lifecycle.watch(job["id"], expect="errored")
    assert finished_state(job["id"]) == "errored"


def test_a_good_job_is_done(lifecycle: Any) -> None:
    job = call("POST", "/jobs", {"mode": "ok"})
    lifecycle.watch(job["id"], expect="done")
    assert finished_state(job["id"]) == "done"


def test_a_swallowed_error_still_reads_done(lifecycle: Any) -> None:
    # Passes on its own assertion: only --lifecycle-strict fails it.
    job = call("POST", "/jobs", {"mode": "swallowed_error"})
    lifecycle.watch(job["id"])
    assert finished_state(job["id"]) == "done"
