"""The tasks service's own end-to-end test, as the seed's team wrote it: submit a task that
must fail, poll it until it is finished, check its final status.

With the lifecycle client installed, the ``lifecycle`` fixture is there: one line watches
the task, and the failing test's report carries what the inspector saw of it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any

API = os.environ["TASKS_API_URL"]


def call(method: str, path: str, payload: Any = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{API}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def final_status(task_id: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = call("GET", f"/tasks/{task_id}")["status"]
        if status in ("COMPLETED", "FAILED") or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_submit_task_and_expect_failure(lifecycle: Any) -> None:
    task = call("POST", "/tasks", {"mode": "swallowed_error"})
    lifecycle.watch(task["id"], expect="FAILED")
    assert final_status(task["id"]) == "FAILED"
