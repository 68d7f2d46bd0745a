"""Websocket consumers: subscribe to the process's hub, forward fragments, clean up.

The client opens with ``{"type": "hello", "have": [event ids it shows]}``; the consumer
subscribes first, then sends what the client lacks from the table, then follows the hub,
never sending an event twice on one connection. A reconnecting client says what it has,
so it gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from lifecycle import checks, live, queries
from lifecycle.checker import Finding
from lifecycle.events import EventRecord
from lifecycle.feed.hub import ALL, Subscription, get_hub
from lifecycle.findings import finding_views, pin
from lifecycle.models import Run
from lifecycle.timeline import EventView, StatusTracker, TimelineBuilder, in_time_order

logger = logging.getLogger(__name__)

MAX_HAVE = 100_000


def _hello(text_data: str | None) -> dict[str, Any] | None:
    try:
        message = json.loads(text_data or "")
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.get("type") != "hello":
        return None
    return message


def _ids(values: Any) -> set[int]:
    if not isinstance(values, list):
        return set()
    return {v for v in values[:MAX_HAVE] if isinstance(v, int) and not isinstance(v, bool)}


class LiveConsumer(AsyncWebsocketConsumer):
    topic: str = ALL

    async def connect(self) -> None:
        self.subscription: Subscription | None = None
        self.lock = asyncio.Lock()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.subscription is not None:
            get_hub().unsubscribe(self.subscription)
            self.subscription = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        hello = _hello(text_data)
        if hello is None or self.subscription is not None:
            return
        hub = get_hub()
        await hub.ensure_started()
        async with self.lock:  # live batches wait until the catch-up is sent
            self.subscription = hub.subscribe(self.topic, self.on_events, on_resync=self.resync)
            await self.catch_up(hello)

    async def on_events(self, batch: list[EventRecord]) -> None:
        async with self.lock:
            await self.forward(batch)

    async def resync(self) -> None:
        async with self.lock:
            await self.catch_up(None)

    async def catch_up(self, hello: dict[str, Any] | None) -> None:
        raise NotImplementedError

    async def forward(self, batch: list[EventRecord]) -> None:
        raise NotImplementedError


class CheckBudget:
    """How much of the process's time live findings may take: a token bucket of seconds.

    The checker reads a task's whole history, and its cost grows faster than the history
    (1.5 s at 5,000 events here). Checks wait their turn, one at a time, so that together
    they use at most ``share`` of the time and events keep flowing; under load findings
    come later, never wrong.
    """

    def __init__(self, share: float = 0.1, burst: float = 0.05) -> None:
        self.share, self.burst = share, burst
        self.tokens = burst
        self.updated = 0.0
        self.lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def run(
        self,
        check: Callable[[list[EventRecord]], Awaitable[list[Finding]]],
        records: list[EventRecord],
        loop: asyncio.AbstractEventLoop,
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
            findings = await check(records)
            self.tokens -= loop.time() - self.updated
            self.updated = loop.time()
            return findings


_budget = CheckBudget()


class TaskConsumer(LiveConsumer):
    """One task's timeline (on the task page, and the run page with ``?run=ID``).

    A live event goes out at once, with the header; the findings, which take the checker
    over the whole history, follow in a message of their own, at most every
    ``REFRESH_INTERVAL`` and within the process's ``CheckBudget``, so a burst costs one
    check and an event's latency does not grow with its task's history. Refreshes fall on
    a grid shifted per task, so the connections to one task check the same history once (the
    checker's answers are memoised by the events they cover).
    """

    REFRESH_INTERVAL = 0.2
    THREAD_CHECK = 500  # histories at least this long are checked off the event loop

    async def connect(self) -> None:
        self.topic = self.scope["url_route"]["kwargs"]["task_key"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        run = query.get("run", [""])[0]
        self.run_id = int(run) if run.isdigit() else None
        self.builder = TimelineBuilder()
        self.records: list[EventRecord] = []
        self.views: list[EventView] = []
        self.status = StatusTracker()
        self.findings: list[Finding] | None = None
        self.expected: str | None = None
        self.sent: set[int] = set()
        self.empty_shown = False  # the page shows "No event yet"
        self.refresher: asyncio.Task[None] | None = None
        self.stale = False  # events came since the findings were computed
        self.next_refresh = 0.0  # loop time
        self.generation = 0  # catch-ups so far: a check of an older history is dropped
        await super().connect()

    async def disconnect(self, code: int) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
        await super().disconnect(code)

    async def catch_up(self, hello: dict[str, Any] | None) -> None:
        if hello is not None:
            self.sent |= _ids(hello.get("have"))
            self.empty_shown = not self.sent
        records = in_time_order(await database_sync_to_async(queries.task_events)(self.topic))
        self.expected = await database_sync_to_async(self._expected)()
        self.generation += 1
        self.builder = TimelineBuilder()
        self.views = self.builder.extend(records)
        self.records = records
        self.status = StatusTracker(records)
        self.findings = None  # the page's findings are as of its render: send them again
        missing = [v for v in self.views if v.id not in self.sent]
        self.sent.update(r.id for r in records)
        self.stale = False
        findings = await self._check(records)
        parts = self._findings_parts(findings, first={v.id for v in missing})
        parts.insert(0, live.events_fragment(missing, first=self.empty_shown))
        if missing:
            self.empty_shown = False
        parts.append(await self._status_fragment(header=bool(missing), verdict=True))
        await self._send(parts)

    def _expected(self) -> str | None:
        if self.run_id is not None:
            return Run.objects.filter(pk=self.run_id).values_list("expected", flat=True).first()
        return checks.expected_for(self.topic)

    async def forward(self, batch: list[EventRecord]) -> None:
        fresh = [r for r in batch if r.id not in self.sent]
        if not fresh:
            return
        self.sent.update(r.id for r in fresh)
        self.records.extend(fresh)
        self.status.update(fresh)
        views = self.builder.extend(fresh)
        self.views.extend(views)
        parts = [live.events_fragment(views, first=self.empty_shown)]
        self.empty_shown = False
        # The header is cheap; the verdict needs the run's row: it waits for the refresh.
        parts.append(await self._status_fragment(header=True, verdict=False))
        await self._send(parts)
        self.stale = True
        if self.refresher is None or self.refresher.done():
            self.refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """Bring the findings (and a run's verdict) up to date, throttled, until current."""
        try:
            await self._refresh_until_current()
        except Exception:
            logger.exception("refreshing the findings of %r failed", self.topic)

    async def _refresh_until_current(self) -> None:
        loop = asyncio.get_running_loop()
        while self.stale:
            delay = self.next_refresh - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.stale = False
            generation, records = self.generation, list(self.records)
            findings = await _budget.run(self._check, records, loop)
            grid, phase = self.REFRESH_INTERVAL, self._phase()
            self.next_refresh = ((loop.time() - phase) // grid + 1) * grid + phase
            async with self.lock:
                if generation != self.generation:
                    continue  # a catch-up sent the findings of a newer history meanwhile
                parts = self._findings_parts(findings)
                parts.append(await self._status_fragment(header=False, verdict=True))
                await self._send(parts)

    def _phase(self) -> float:
        """Where in the refresh grid this task's connections refresh: the same for one task
        (they share the memoised check), spread across tasks (no burst of every check)."""
        return (zlib.crc32(self.topic.encode()) % 1000) / 1000 * self.REFRESH_INTERVAL

    async def _check(self, records: list[EventRecord]) -> list[Finding]:
        if len(records) < self.THREAD_CHECK:
            return checks.findings_for(records, self.expected)
        # Long: in a thread, so that other connections' events keep flowing meanwhile.
        return await asyncio.to_thread(checks.findings_for, records, self.expected)

    def _findings_parts(
        self, findings: list[Finding], first: AbstractSet[int] = frozenset()
    ) -> list[str]:
        """Re-mark the events whose findings changed, and the findings if they changed.

        ``first``: events about to be sent for the first time (marked, not replaced).
        """
        marked = pin(self.views, findings)
        remarked = [v for v in self.views if v.id in marked and v.id not in first]
        parts = [live.replace_events_fragment(remarked)]
        if self.findings is None or findings != self.findings:
            self.findings = findings
            parts.append(
                live.findings_fragment(finding_views(findings, self.records), self.expected)
            )
        return parts

    async def _status_fragment(self, *, header: bool, verdict: bool) -> str:
        """The task header (task page), or the run's verdict (run page)."""
        if self.run_id is None:
            if not header:
                return ""
            return live.header_fragment(self.topic, self.status.current, len(self.records))
        if not verdict:
            return ""
        run = await Run.objects.filter(pk=self.run_id).afirst()
        return live.verdict_fragment(run) if run is not None else ""

    async def _send(self, parts: list[str]) -> None:
        html = "".join(p for p in parts if p)
        if html:
            await self.send(text_data=html)


class FeedConsumer(LiveConsumer):
    """The home page's list of recent tasks: every event moves its task to the top."""

    topic = ALL

    # Rows are re-rendered at most this often: under a burst, once for many events.
    FLUSH_DELAY = 0.2

    async def connect(self) -> None:
        self.shown: set[str] = set()  # task keys the page lists
        self.pending: dict[str, None] = {}  # task keys to refresh, newest last
        self.flusher: asyncio.Task[None] | None = None
        await super().connect()

    async def disconnect(self, code: int) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
        await super().disconnect(code)

    async def catch_up(self, hello: dict[str, Any] | None) -> None:
        if hello is not None:
            tasks = hello.get("tasks")
            if isinstance(tasks, list):
                self.shown |= {t for t in tasks[:1000] if isinstance(t, str)}
        # Whatever changed between the page's render (or a lost connection) and now.
        summaries = await database_sync_to_async(_recent)()
        html = live.task_rows_fragment(summaries, self.shown)
        if html:
            await self.send(text_data=html)

    async def forward(self, batch: list[EventRecord]) -> None:
        for record in batch:
            self.pending.pop(record.task_key, None)
            self.pending[record.task_key] = None
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        await asyncio.sleep(self.FLUSH_DELAY)
        async with self.lock:
            keys = list(reversed(self.pending))  # newest first
            self.pending.clear()
            summaries = await database_sync_to_async(_summaries)(keys)
            html = live.task_rows_fragment(summaries, self.shown)
            if html:
                await self.send(text_data=html)


def _summaries(keys: list[str]) -> list[queries.TaskSummary]:
    found = {s.task_key: s for s in (queries.task_summary(k) for k in keys) if s}
    checked = checks.refresh(list(found))
    for key, summary in found.items():
        summary.findings = checked[key].kinds if key in checked else []
    return [found[k] for k in keys if k in found]


def _recent() -> list[queries.TaskSummary]:
    summaries, _ = queries.recent_tasks(1)
    return _summaries([s.task_key for s in summaries])
