"""The jobs service's end-to-end test: submit a job that must fail, poll it until it is
finished, check its final status, against the running service (``JOBS_API_URL``).

With the lifecycle client installed, the ``lifecycle`` fixture is there: one line watches
the job (by its id: ``LIFECYCLE_KEY_PREFIX`` in the settings makes it the inspector's key),
and the failing test's report carries what the inspector saw of it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any

API = os.environ.get("JOBS_API_URL", "http://127.0.0.1:8000")


def call(method: str, path: str, payload: Any = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{API}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def final_status(job_id: int, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = call("GET", f"/jobs/{job_id}")["status"]
        if status in ("COMPLETED", "FAILED") or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_a_job_whose_summary_fails_ends_failed(lifecycle: Any) -> None:
    job = call("POST", "/jobs", {"mode": "swallowed_error"})
    lifecycle.watch(job["id"], expect="FAILED")
    assert final_status(job["id"]) == "FAILED"
