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
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from lifecycle import checks, live, queries
from lifecycle.checker import Finding
from lifecycle.events import EventRecord
from lifecycle.findings import finding_views, pin
from lifecycle.feed.hub import ALL, get_hub
from lifecycle.models import Run
from lifecycle.timeline import EventView, TimelineBuilder, current_status, in_time_order

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
        self.subscription = None
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


class TaskConsumer(LiveConsumer):
    """One task's timeline (on the task page, and the run page with ``?run=ID``)."""

    async def connect(self) -> None:
        self.topic = self.scope["url_route"]["kwargs"]["task_key"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        run = query.get("run", [""])[0]
        self.run_id = int(run) if run.isdigit() else None
        self.builder = TimelineBuilder()
        self.records: list[EventRecord] = []
        self.views: list[EventView] = []
        self.findings: list[Finding] | None = None
        self.expected: str | None = None
        self.sent: set[int] = set()
        self.empty_shown = False  # the page shows "No event yet"
        await super().connect()

    async def catch_up(self, hello: dict[str, Any] | None) -> None:
        if hello is not None:
            self.sent |= _ids(hello.get("have"))
            self.empty_shown = not self.sent
        records = in_time_order(await database_sync_to_async(queries.task_events)(self.topic))
        self.expected = await database_sync_to_async(self._expected)()
        self.builder = TimelineBuilder()
        self.views = self.builder.extend(records)
        self.records = records
        self.findings = None  # the page's findings are as of its render: send them again
        missing = [v for v in self.views if v.id not in self.sent]
        self.sent.update(r.id for r in records)
        await self.push(missing, verdict=self.run_id is not None)

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
        views = self.builder.extend(fresh)
        self.views.extend(views)
        await self.push(views, verdict=self.run_id is not None)

    async def push(self, views: list[EventView], verdict: bool) -> None:
        findings = checks.findings_for(self.records, self.expected)
        marked = pin(self.views, findings)
        new_ids = {v.id for v in views}
        parts = [live.events_fragment(views, first=self.empty_shown)]
        if views:
            self.empty_shown = False
        remarked = [v for v in self.views if v.id in marked and v.id not in new_ids]
        parts.append(live.replace_events_fragment(remarked))
        if self.findings is None or findings != self.findings:
            self.findings = findings
            parts.append(live.findings_fragment(
                finding_views(findings, self.records), self.expected
            ))
        if views or verdict:
            if self.run_id is None:
                parts.append(live.header_fragment(
                    self.topic, current_status(self.records), len(self.records)
                ))
            else:
                run = await Run.objects.filter(pk=self.run_id).afirst()
                if run is not None:
                    parts.append(live.verdict_fragment(run))
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
