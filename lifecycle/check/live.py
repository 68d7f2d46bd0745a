"""Findings of a live timeline: when they are recomputed, and how much time that may take.

The checker reads a task's whole history, and its cost grows faster than the history
(1.5 s at 5,000 events here). A live timeline therefore sends each event at once and its
findings later, in a message of their own: at most every ``interval``, on a grid shifted
per task, within the process's ``CheckBudget``. A burst costs one check, and an event's
latency does not grow with its task's history. The connections to one task fall on the
same grid point, so they check the same history once (``findings.findings_for`` memoises
its answers by the events they cover).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable

from lifecycle.check import findings
from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord

logger = logging.getLogger(__name__)

Check = Callable[[list[EventRecord]], Awaitable[list[Finding]]]
# Receives the findings and the generation of the history they are of.
Publish = Callable[[list[Finding], int], Awaitable[None]]

THREAD_CHECK = 500  # histories at least this long are checked off the event loop


class CheckBudget:
    """How much of the process's time live findings may take: a token bucket of seconds.

    Checks wait their turn, one at a time, so that together they use at most ``share`` of
    the time and events keep flowing; under load findings come later, never wrong.
    """

    def __init__(self, share: float = 0.1, burst: float = 0.05) -> None:
        self.share, self.burst = share, burst
        self.tokens = burst
        self.updated = 0.0
        self.lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def run(
        self, check: Check, records: list[EventRecord], loop: asyncio.AbstractEventLoop
    ) -> list[Finding]:
        if self.loop is not loop:  # a new event loop (a test's): a lock belongs to one loop
            self.lock, self.loop = asyncio.Lock(), loop
        async with self.lock:
            now = loop.time()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.share)
            self.updated = now
            if self.tokens < 0:
                await asyncio.sleep(-self.tokens / self.share)
                self.tokens, self.updated = 0.0, loop.time()
            found = await check(records)
            self.tokens -= loop.time() - self.updated
            self.updated = loop.time()
            return found


BUDGET = CheckBudget()  # the process's


class RefreshGrid:
    """When one task's findings may be recomputed next: points ``interval`` apart, shifted
    by a phase that is the same for every connection to the task and spread across tasks
    (no burst of every task's check at once). Pure: times are the caller's clock."""

    def __init__(self, task_key: str, interval: float = 0.2) -> None:
        self.interval = interval
        self.phase = (zlib.crc32(task_key.encode()) % 1000) / 1000 * interval
        self.next_at = 0.0

    def wait(self, now: float) -> float:
        """Seconds until a refresh may start (0 when one may start now)."""
        return max(0.0, self.next_at - now)

    def refreshed(self, now: float) -> None:
        """A refresh ended at ``now``: the next one waits for the next grid point."""
        self.next_at = ((now - self.phase) // self.interval + 1) * self.interval + self.phase


async def check_history(records: list[EventRecord], expected: str | None) -> list[Finding]:
    """The findings of a history; a long one in a thread, so other connections' events keep
    flowing meanwhile."""
    if len(records) < THREAD_CHECK:
        return findings.findings_for(records, expected)
    return await asyncio.to_thread(findings.findings_for, records, expected)


class FindingsRefresher:
    """Keep one live timeline's findings current: ``stale()`` after new events; it rechecks
    the history (``history()``), throttled by its grid and the budget, until current, and
    hands each answer to ``publish`` with the generation it was computed for."""

    def __init__(
        self,
        task_key: str,
        history: Callable[[], list[EventRecord]],
        check: Check,
        publish: Publish,
        *,
        interval: float = 0.2,
        budget: CheckBudget = BUDGET,
    ) -> None:
        self.task_key = task_key
        self.history, self.check, self.publish = history, check, publish
        self.grid = RefreshGrid(task_key, interval)
        self.budget = budget
        self.generation = 0  # bumped when the history is replaced (a catch-up)
        self.pending = False  # events came since the findings were computed
        self.task: asyncio.Task[None] | None = None

    def replaced(self) -> None:
        """The history was reloaded and its findings sent: answers for the old one are void."""
        self.generation += 1
        self.pending = False

    def stale(self) -> None:
        self.pending = True
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while self.pending:
                delay = self.grid.wait(loop.time())
                if delay > 0:
                    await asyncio.sleep(delay)
                self.pending = False
                generation, records = self.generation, list(self.history())
                found = await self.budget.run(self.check, records, loop)
                self.grid.refreshed(loop.time())
                await self.publish(found, generation)
        except Exception:
            logger.exception("refreshing the findings of %r failed", self.task_key)
