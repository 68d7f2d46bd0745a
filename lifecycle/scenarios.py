"""The catalogue of scenarios: named recipes the probe runs like an end-to-end test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    config: dict[str, Any]
    expected: str
    # None for a clean scenario; else the lab fault switch it turns on.
    fault: str | None = None
    # The finding the checker must report for this scenario (None: no finding at all), and
    # its cause where the kind has causes.
    finding: str | None = None
    finding_cause: str | None = None
    timeout: float = 10.0  # seconds to wait for a terminal status
    settle: float = 1.0  # after a terminal status, keep polling this long: it must stay
    poll_interval: float = 0.1

    @property
    def clean(self) -> bool:
        return self.fault is None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "expected": self.expected,
            "clean": self.clean,
            "fault": self.fault,
            "finding": self.finding,
            "finding_cause": self.finding_cause,
            "config": self.config,
            "timeout": self.timeout,
            "settle": self.settle,
        }


BAD_INPUT = [1, "two", 3]

CATALOGUE: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "succeeds", "Sums three numbers and completes.", {"input": [1, 2, 3]}, "COMPLETED"
        ),
        Scenario(
            "fails",
            "Gets a non-number in its input and fails cleanly.",
            {"input": BAD_INPUT},
            "FAILED",
        ),
        Scenario(
            "slow",
            "Works for 2 seconds, then completes.",
            {"input": [1, 2, 3], "sleep": 2},
            "COMPLETED",
            timeout=15,
        ),
        Scenario(
            "retry-then-succeeds",
            "Fails twice, is retried by Dramatiq, then completes.",
            {"input": [1, 2, 3], "fail_times": 2},
            "COMPLETED",
            timeout=15,
        ),
        Scenario(
            "swallowed-error",
            "The work fails, the worker logs the error and commits COMPLETED anyway.",
            {"input": BAD_INPUT, "swallowed_error": True},
            "FAILED",
            fault="swallowed_error",
            finding="expectation_mismatch",
            finding_cause="committed",
        ),
        Scenario(
            "missing-commit",
            "The worker writes COMPLETED but never commits it: the task stays RUNNING.",
            {"input": [1, 2, 3], "missing_commit": True},
            "COMPLETED",
            fault="missing_commit",
            finding="stuck",
            timeout=4,
        ),
        Scenario(
            "overwrite-after-failure",
            "The worker commits FAILED, then a cleanup path commits COMPLETED over it.",
            {"input": BAD_INPUT, "overwrite_after_failure": True},
            "FAILED",
            fault="overwrite_after_failure",
            finding="terminal_overwrite",
        ),
        Scenario(
            "cached-read",
            "The API serves the task from a per-process cache that is never refreshed.",
            {"input": [1, 2, 3], "sleep": 1, "cached_read": True},
            "COMPLETED",
            fault="cached_read",
            finding="stale_read",
            finding_cause="cached_object",
            timeout=5,
        ),
        Scenario(
            "snapshot-read",
            "The API polls the task inside one long REPEATABLE READ transaction.",
            {"input": [1, 2, 3], "sleep": 1, "snapshot_read": True},
            "COMPLETED",
            fault="snapshot_read",
            finding="stale_read",
            finding_cause="old_snapshot",
            timeout=5,
        ),
        Scenario(
            "enqueue-before-commit",
            "The API sends the message before the row commits; the worker drops it.",
            {"input": [1, 2, 3], "enqueue_before_commit": True},
            "COMPLETED",
            fault="enqueue_before_commit",
            finding="enqueue_before_commit",
            timeout=4,
        ),
        Scenario(
            "redelivery",
            "The worker dies after the work, before the ack: the task runs twice.",
            {"input": [1, 2, 3], "redelivery": True},
            "COMPLETED",
            fault="redelivery",
            finding="duplicate_execution",
            timeout=20,
            settle=8,
        ),
    ]
}


class UnknownScenario(KeyError):
    def __str__(self) -> str:
        return f"unknown scenario {self.args[0]!r}; known: {', '.join(CATALOGUE)}"


def get_scenario(name: str) -> Scenario:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownScenario(name) from None
