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
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from contextlib import nullcontext
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from dashboard import fragments, session_sockets, sockets
from dashboard.access import may_read
from dashboard.render import finding_views, window_html
from lifecycle.check import findings
from lifecycle.check.live import FindingsRefresher, check_history
from lifecycle.check.rules import Finding
from lifecycle.events import GAP, EventRecord
from lifecycle.feed.hub import ALL, Subscription, get_hub
from lifecycle.models import Run
from lifecycle.runtime import allocator
from lifecycle.store import eventlog
from lifecycle.timeline.catch_up import (
    LiveHistory,
    PageHolds,
    maintainers_findings,
    read_start,
    window_before,
)
from lifecycle.timeline.layout import EventView, pin
from lifecycle.words import gap_notices

logger = logging.getLogger(__name__)

MAX_HAVE = 100_000
MAX_RUNS = 10_000


def _hello(text_data: str | None) -> dict[str, Any] | None:
    try:
        message = json.loads(text_data or "")
    except (ValueError, RecursionError):  # not JSON, a number past 4,300 digits, too deep
        return None
    if not isinstance(message, dict) or message.get("type") != "hello":
        return None
    return message


MAX_ID = 2**63 - 1  # an event id is a bigint: a larger one would be PostgreSQL's error


def _id(value: Any) -> int:
    return (
        value
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID
        else 0
    )


def _runs(values: Any) -> dict[int, tuple[int, int]]:
    """The hello's folded runs: ``[[first id, count, last id], ...]`` (at most MAX_RUNS)."""
    if not isinstance(values, list):
        return {}
    runs = {}
    for value in values[:MAX_RUNS]:
        if isinstance(value, list) and len(value) == 3:
            first, count, last = (_id(v) for v in value)
            if first and count and last:
                runs[first] = (count, last)
    return runs


def _ids(values: Any) -> set[int]:
    if not isinstance(values, list):
        return set()
    return {v for v in values[:MAX_HAVE] if _id(v)}


class LiveConsumer(session_sockets.EndsWithSession, AsyncWebsocketConsumer):
    topic: str = ALL

    async def connect(self) -> None:
        self.subscription: Subscription | None = None
        self.lock = asyncio.Lock()
        self.holder: str | None = None  # counted against its cap (``sockets``) while open
        # The session's user (AuthMiddlewareStack), who must be able to read, as for pages;
        # the origin was checked before (AllowedHostsOriginValidator).
        if not await database_sync_to_async(may_read)(self.scope):
            await self.close(code=4403)
            return
        holder = sockets.holder(self.scope)
        await self.accept()
        if not sockets.take(holder):
            who = "a session" if holder.startswith("session") else holder  # keys stay out
            logger.warning("websocket refused: %s holds %d already", who, sockets.cap())
            await self.close(code=sockets.CLOSE_CODE, reason=sockets.refusal())
            return
        self.holder = holder
        await session_sockets.join(self)  # closed when its session ends

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However it ended: a disconnect never handled (the client left while a catch-up
            # ran, and the server cancelled the consumer after its close timeout) left it
            # subscribed, with its history, for as long as the process lived.
            self.release()

    def release(self) -> None:
        """Let go of what holds this consumer: its subscription to the live events, its
        place under the session's cap, its session's watch, its timers. Synchronous, and
        harmless when done already."""
        subscription = getattr(self, "subscription", None)
        if subscription is not None:
            get_hub().unsubscribe(subscription)
            self.subscription = None
        holder = getattr(self, "holder", None)
        if holder is not None:
            sockets.release(holder)
            self.holder = None
        session_sockets.forget(self)

    async def disconnect(self, code: int) -> None:
        self.release()
        await session_sockets.leave(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        hello = _hello(text_data)
        if hello is None or self.subscription is not None or self.holder is None:
            return  # not a hello, a second one, or a socket refused at the cap
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
    """One task's timeline (on the task page, and the run page with ``?run=ID``).

    A live event goes out at once, with the header; the findings follow in a message of
    their own, paced by ``lifecycle.check.live``. What the connection knows of the history
    is ``lifecycle.timeline.catch_up``'s; here it becomes fragments.
    """

    async def connect(self) -> None:
        self.topic = self.scope["url_route"]["kwargs"]["task_key"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        run = query.get("run", [""])[0]
        self.run_id = int(run) if run.isdigit() else None
        self.history = LiveHistory(self.topic)
        self.views: list[EventView] = []  # the history's, laid out
        self.page = PageHolds()  # what the page in the browser holds
        self.rows = fragments.LiveRows()
        self.empty_shown = False  # the page shows "No event yet"
        self.findings: list[Finding] | None = None  # as the page shows them
        self.refresher = FindingsRefresher(
            self.topic, lambda: self.history.records, self.check, self.publish_findings
        )
        await super().connect()

    def release(self) -> None:
        refresher = getattr(self, "refresher", None)
        if refresher is not None:
            refresher.cancel()
        super().release()
        # The history it held goes now, not at the collector's next full pass: the consumer
        # and its refresher refer to each other, and a long page's tail is megabytes.
        self.history, self.views = LiveHistory(self.topic), []
        self.rows = fragments.LiveRows()

    async def catch_up(self, hello: dict[str, Any] | None) -> None:
        """Send what the page lacks: a long page (its hello says up to which id it knows
        every event, or the history is long now) gets its last events at most, and a
        window for what it lacks before them."""
        shown = self._hear(hello)
        long = self.history.long or bool(self.page.known_until)
        history = await database_sync_to_async(read_start)(self.topic, self.run_id, long, self.page)
        with allocator.heavy() if history.long else nullcontext():
            await self._send(await self._catch_up_parts(history, shown))

    def _hear(self, hello: dict[str, Any] | None) -> set[int]:
        """Take what the page holds from its hello (None, a resync: what it was and what
        this connection sent since); the ids it shows as rows of their own."""
        if hello is None:
            self.page.runs = {
                run.first.id: (run.count, run.last.id) for run in self.rows.folded.values()
            }
            return set(self.rows.own_rows)
        self.page.sent |= _ids(hello.get("have"))
        self.page.known_until = _id(hello.get("known_until"))
        self.page.runs = _runs(hello.get("runs"))
        self.empty_shown = not self.page.sent and not self.page.known_until
        return set(self.page.sent)

    async def _catch_up_parts(self, history: LiveHistory, shown: set[int]) -> list[str]:
        self.refresher.replaced()
        self.history = history
        self.views = history.builder.extend(history.records)
        self.findings = None  # the page's findings are as of its render: send them again
        found = history.found if history.long else await self.check(history.records)
        marked = pin(self.views, found)  # before the rows: a read that proves stands alone
        missing = self.rows.seed(self.views, self.page.knows, shown, self.page.runs)
        self.page.sent.update(r.id for r in history.records)
        missing, windowed = history.to_send(missing)
        window = ""
        if windowed:
            w = await database_sync_to_async(window_before)(
                self.topic, history.page_end, missing[0].record
            )
            if w is not None:
                window = window_html(self.topic, w.after, w.before, w.count)
                self.rows.window_before(missing[0])
        missing_ids = {v.id for v in missing}
        # The window first: appended where the page ends, then the rows after it.
        parts = [fragments.rows_fragment([window] if window else [])]
        parts.append(self.rows.place(missing, first=self.empty_shown and bool(missing)))
        if missing:
            self.empty_shown = False
        parts.append(
            self.rows.remark(v for v in self.views if v.id in marked and v.id not in missing_ids)
        )
        parts.extend(self._findings_parts(found, first=missing_ids))
        parts.append(await self._status_fragment(header=bool(missing), verdict=True))
        return parts

    async def forward(self, batch: list[EventRecord]) -> None:
        fresh = [r for r in batch if r.id not in self.page.sent]
        if not fresh:
            return
        self.page.sent.update(r.id for r in fresh)
        history = self.history
        history.records.extend(fresh)
        history.status.update(fresh)
        if any(r.kind == GAP for r in fresh):
            history.gaps = gap_notices(history.records)
        unknown = history.versions_to_seek(fresh)
        if unknown:
            await database_sync_to_async(history.seek_versions)(unknown)
        views = history.builder.extend(fresh)
        self.views.extend(views)
        parts = [self.rows.place(views, first=self.empty_shown)]
        self.empty_shown = False
        # The header is cheap; the verdict needs the run's row: it waits for the refresh.
        parts.append(await self._status_fragment(header=True, verdict=False))
        await self._send(parts)
        self.refresher.stale()

    async def check(self, records: list[EventRecord]) -> list[Finding]:
        history = self.history
        if history.long:  # the maintainer's findings, and the events they name
            found, history.named = await database_sync_to_async(maintainers_findings)(
                self.topic, history.expected
            )
            return found
        return await check_history(records, history.expected)

    async def publish_findings(self, found: list[Finding], generation: int) -> None:
        async with self.lock:
            if generation != self.refresher.generation:
                return  # a catch-up sent the findings of a newer history meanwhile
            parts = self._findings_parts(found)
            parts.append(await self._status_fragment(header=False, verdict=True))
            await self._send(parts)

    def _findings_parts(
        self, found: list[Finding], first: AbstractSet[int] = frozenset()
    ) -> list[str]:
        """Re-mark the events whose findings changed, and the findings if they changed.

        ``first``: events about to be sent for the first time (marked, not replaced).
        """
        marked = pin(self.views, found)
        parts = [self.rows.remark(v for v in self.views if v.id in marked and v.id not in first)]
        if self.findings is None or found != self.findings:
            self.findings = found
            views = finding_views(found, self.history.explaining())
            parts.append(fragments.findings_fragment(views, self.history.expected))
        return parts

    async def _status_fragment(self, *, header: bool, verdict: bool) -> str:
        """The task header (task page), or the run's verdict (run page)."""
        if self.run_id is None:
            if not header:
                return ""
            history = self.history
            return fragments.header_fragment(
                self.topic, history.status.current, history.count, history.gaps
            )
        if not verdict:
            return ""
        run = await Run.objects.filter(pk=self.run_id).afirst()
        return fragments.verdict_fragment(run) if run is not None else ""

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

    def release(self) -> None:
        flusher = getattr(self, "flusher", None)
        if flusher is not None:
            flusher.cancel()
        super().release()

    async def catch_up(self, hello: dict[str, Any] | None) -> None:
        if hello is not None:
            tasks = hello.get("tasks")
            if isinstance(tasks, list):
                self.shown |= {t for t in tasks[:1000] if isinstance(t, str)}
        # Whatever changed between the page's render (or a lost connection) and now.
        summaries = await recent_shared()
        html = fragments.task_rows_fragment(summaries, self.shown)
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
            html = fragments.task_rows_fragment(summaries, self.shown)
            if html:
                await self.send(text_data=html)


def _summaries(keys: list[str]) -> list[eventlog.TaskSummary]:
    """These tasks' rows, in this order: a few queries for all of them, not a few each."""
    found = {s.task_key: s for s in eventlog.summaries_of(keys)} if keys else {}
    findings.with_findings(list(found.values()))
    return [found[k] for k in keys if k in found]


def _recent() -> list[eventlog.TaskSummary]:
    summaries, _ = eventlog.recent_tasks(1)
    findings.with_findings(summaries)
    return summaries


class Shared:
    """One computation for the callers that ask while it has not begun: the home page's
    catch-up is the same for every connection, and 300 pages opened at once (a deploy, a
    wall of screens) would otherwise run it 300 times in the web process's one database
    thread, and their handshakes would wait behind it. A caller never joins one that has
    begun: it may have read the database before the caller subscribed to the live events,
    and miss one that came in between."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute
        self.pending: asyncio.Future[Any] | None = None
        self.begun = False

    async def __call__(self) -> Any:
        if self.pending is None or self.begun:
            self.pending = asyncio.get_running_loop().create_future()
            self.begun = False
            asyncio.ensure_future(self._run(self.pending))
        return await asyncio.shield(self.pending)

    async def _run(self, future: asyncio.Future[Any]) -> None:
        def begin_and_compute() -> Any:
            if self.pending is future:
                self.begun = True  # in the database thread, before its first query
            return self.compute()

        try:
            future.set_result(await database_sync_to_async(begin_and_compute)())
        except Exception as exc:  # every waiter gets it, as its own call would have
            future.set_exception(exc)


recent_shared = Shared(_recent)
