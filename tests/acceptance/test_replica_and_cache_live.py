"""The lab's two scenarios of a stale status from outside the application's code, with real
parts: its API reading a real hot standby whose replay lags (``replica-read``), and its poll
URL behind Django's ``cache_page`` (``cached-response``). Each run gets its finding, with its
fix line, and the timeline says which server answered."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.acceptance.test_findings_live import timeline
from tests.acceptance.test_lab_live import run_until_done
from tests.conftest import (
    ROOT,
    Stack,
    wait_for,
)

pytestmark = pytest.mark.acceptance


@pytest.fixture
def replica_stack(standby: str, stack: Stack) -> Stack:
    """The session's stack, whose LAB_REPLICA_URL names the standby's copy of the test
    database (tests/conftest.py), with the standby running."""
    return stack


def findings_of(stack: Stack, run_id: int, kind: str, cause: str) -> list[dict[str, Any]]:
    def there() -> Any:
        found = stack.get(f"/api/runs/{run_id}")[1]["findings"]
        return found if any((f["kind"], f["cause"]) == (kind, cause) for f in found) else None

    return wait_for(there, 15, 0.3, f"run {run_id}'s {kind}:{cause}")


def test_a_replica_read_run_is_named_replica_with_its_lag_and_fix(
    replica_stack: Stack, live_db: None
) -> None:
    # Given the lab's API reading its task from a standby that replays 1 s behind
    # When replica-read runs
    run = run_until_done(replica_stack, "replica-read")

    # Then it passes (the standby catches up), and its stale reads are the replica's
    assert run["verdict"] == "pass", run
    found = findings_of(replica_stack, run["id"], "stale_read", "replica")
    assert {(f["kind"], f["cause"]) for f in found} == {("stale_read", "replica")}
    replica = found[0]
    assert "from a standby" in replica["message"] and "on the primary at" in replica["message"]
    # (by how much, where the replay stamp is older than the change; else that it had not
    # applied it: another commit stamped just after the change can be replayed before it)
    assert (
        "its replay had reached only" in replica["message"]
        or "had not yet applied that commit" in replica["message"]
    )
    assert replica["fix"].startswith("Read your own writes from the primary")
    # And the timeline shows each API read as a replica's, with its replay time
    body = timeline(replica_stack, run["task"], lambda b: b["findings"])
    reads = [e for e in body["events"] if e["source"] == "api" and e["kind"] == "read"]
    assert reads and all(r["body"]["standby"] is True for r in reads)
    assert any("from a replica, replayed to" in r["summary"] for r in reads)


def test_a_cached_response_run_is_named_response_cache_quoting_the_response(
    replica_stack: Stack, live_db: None
) -> None:
    # When cached-response runs: its polls go through cache_page (2 s)
    run = run_until_done(replica_stack, "cached-response")

    # Then a cache between the client and the API is named, with what the response said
    found = findings_of(replica_stack, run["id"], "stale_read", "response_cache")
    assert {(f["kind"], f["cause"]) for f in found} == {("stale_read", "response_cache")}
    cache = found[0]
    assert "a cache between the client and the API answered" in cache["message"]
    assert "Cache-Control: max-age=2" in cache["message"]
    assert "no-store" in cache["fix"]


def test_without_a_standby_replica_read_is_unavailable_and_says_which_command_provides_one(
    postgres: None,
) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "LAB_REPLICA_URL"}
    listed = subprocess.run(
        [sys.executable, "manage.py", "lifecycle", "scenarios"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    line = next(x for x in listed.stdout.splitlines() if "replica-read" in x)
    assert "unavailable: needs LAB_REPLICA_URL" in line
    assert "python manage.py lifecycle standby start" in line
    ran = subprocess.run(
        [sys.executable, "manage.py", "lifecycle", "run", "replica-read"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 2
    assert "lifecycle standby start" in ran.stderr
