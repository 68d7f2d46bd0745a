"""A task's lifecycle: its statuses, the terminal ones and the transitions allowed between
them. The one definition that the checker, the timeline, the probe and the lab read.

``LAB`` is the lab's lifecycle and the default for any table that names no other.
"""

from __future__ import annotations

from dataclasses import dataclass

PENDING, RUNNING, COMPLETED, FAILED = "PENDING", "RUNNING", "COMPLETED", "FAILED"


@dataclass(frozen=True)
class Lifecycle:
    """The statuses a task moves through; other applications describe their own."""

    statuses: tuple[str, ...]  # in the order a task meets them
    terminal: frozenset[str]
    allowed: frozenset[tuple[str, str]]
    running: str | None = None  # entering it twice without a retry is a second execution
    failed: frozenset[str] = frozenset()  # the terminal statuses that mean failure

    @property
    def succeeded(self) -> frozenset[str]:
        """The terminal statuses that mean success."""
        return self.terminal - self.failed

    def is_terminal(self, status: str | None) -> bool:
        return status in self.terminal

    def reachable(self, old: str, new: str) -> bool:
        """Whether ``new`` can follow ``old`` through allowed transitions (a retry goes back)."""
        seen, todo = {old}, [old]
        while todo:
            here = todo.pop()
            for a, b in self.allowed:
                if a == here and b not in seen:
                    seen.add(b)
                    todo.append(b)
        return new in seen


LAB = Lifecycle(
    statuses=(PENDING, RUNNING, COMPLETED, FAILED),
    terminal=frozenset({COMPLETED, FAILED}),
    # RUNNING -> PENDING is a failed attempt that will be retried; PENDING -> FAILED a task
    # cancelled or rejected before it ran.
    allowed=frozenset(
        {
            (PENDING, RUNNING),
            (RUNNING, COMPLETED),
            (RUNNING, FAILED),
            (RUNNING, PENDING),
            (PENDING, FAILED),
        }
    ),
    running=RUNNING,
    failed=frozenset({FAILED}),
)
DEFAULT = LAB
