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
from dataclasses import dataclass
from datetime import datetime
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
from lifecycle.history import StatusTracker, in_time_order, read_xmin
from lifecycle.models import Run
from lifecycle.runtime import allocator
from lifecycle.store import eventlog, outline
from lifecycle.timeline.layout import EventView, TimelineBuilder, gap_notices, pin

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
    their own, paced by ``lifecycle.check.live``.
    """

    async def connect(self) -> None:
        self.topic = self.scope["url_route"]["kwargs"]["task_key"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        run = query.get("run", [""])[0]
        self.run_id = int(run) if run.isdigit() else None
        self.builder = TimelineBuilder()
        self.records: list[EventRecord] = []
        self.views: list[EventView] = []
        self.status = StatusTracker()
        self.gaps: list[str] = []  # the history's gap sentences, for the header
        self.findings: list[Finding] | None = None
        self.expected: str | None = None
        self.sent: set[int] = set()
        self.known_until = 0  # a long page knows every event up to this id
        self.dom_runs: dict[int, tuple[int, int]] = {}
        self.shown: set[int] = set()
        self.rows = fragments.LiveRows()
        self.empty_shown = False  # the page shows "No event yet"
        # A long page (an outline and windows: its hello says up to which id it knows
        # every event) is followed from its last events only: the whole history is
        # neither loaded nor checked here; its findings are the maintainer's.
        self.long = False
        self.count_before = 0  # a long page's events not in self.records
        self.related: dict[int, EventRecord] = {}  # its findings' events
        self.versions_sought: set[int] = set()  # versions whose commits were looked up
        self.refresher = FindingsRefresher(
            self.topic, lambda: self.records, self.check, self.publish_findings
        )
        await super().connect()

    def release(self) -> None:
        refresher = getattr(self, "refresher", None)
        if refresher is not None:
            refresher.cancel()
        super().release()
        # The history it held goes now, not at the collector's next full pass: the consumer
        # and its refresher refer to each other, and a long page's tail is megabytes.
        self.records, self.views, self.related = [], [], {}
        self.rows = fragments.LiveRows()
        self.builder = TimelineBuilder()

    async def catch_up(self, hello: dict[str, Any] | None) -> None:
        if hello is not None and _id(hello.get("known_until")):
            self.long = True
        if not self.long and await database_sync_to_async(outline.longer_than)(
            self.topic, outline.WINDOWED_ABOVE
        ):
            self.long = True  # a long history, whatever the hello says: from its end only
        if self.long:
            with allocator.heavy():  # its memory goes back once no heavy reader runs
                await self.catch_up_long(hello)
            return
        if hello is not None:
            self.sent |= _ids(hello.get("have"))
            self.known_until = _id(hello.get("known_until"))
            self.dom_runs = _runs(hello.get("runs"))
            self.shown = set(self.sent)
            self.empty_shown = not self.sent and not self.known_until
        else:  # a resync: the page is what it was plus what this connection sent
            self.shown = set(self.rows.own_rows)
            self.dom_runs = {
                run.first.id: (run.count, run.last.id) for run in self.rows.folded.values()
            }
        records = in_time_order(await database_sync_to_async(eventlog.task_events)(self.topic))
        self.expected = await database_sync_to_async(self._expected)()
        self.refresher.replaced()
        self.builder = TimelineBuilder()
        self.views = self.builder.extend(records)
        self.records = records
        self.status = StatusTracker(records)
        self.gaps = gap_notices(records)
        self.findings = None  # the page's findings are as of its render: send them again
        found = await self.check(records)
        marked = pin(self.views, found)  # before the rows: a read that proves stands alone
        sent, known_until = self.sent, self.known_until
        missing = self.rows.seed(
            self.views, lambda v: v.id in sent or v.id <= known_until, self.shown, self.dom_runs
        )
        self.sent.update(r.id for r in records)
        missing_ids = {v.id for v in missing}
        parts = [self.rows.place(missing, first=self.empty_shown and bool(missing))]
        parts.append(
            self.rows.remark(v for v in self.views if v.id in marked and v.id not in missing_ids)
        )
        parts.extend(self._findings_parts(found, first=missing_ids))
        if missing:
            self.empty_shown = False
        parts.append(await self._status_fragment(header=bool(missing), verdict=True))
        await self._send(parts)

    async def catch_up_long(self, hello: dict[str, Any] | None) -> None:
        """``catch_up`` for a long history: its last events and what came after the page,
        as much as a long page's tail (``outline.TAIL``) at most, whatever the hello says;
        what the page lacks before those is a window it loads on demand, as its own."""
        if hello is not None:
            self.known_until = _id(hello.get("known_until"))
            self.sent |= _ids(hello.get("have"))
            self.dom_runs = _runs(hello.get("runs"))
            self.shown = set(self.sent)
            self.empty_shown = not self.sent and not self.known_until
            page_end = max([self.known_until, *self.sent, *(v[1] for v in self.dom_runs.values())])
        else:
            self.shown = set(self.rows.own_rows)
            self.dom_runs = {
                run.first.id: (run.count, run.last.id) for run in self.rows.folded.values()
            }
            page_end = max([self.known_until, *self.sent])
        state = await database_sync_to_async(_long_state)(
            self.topic, self.known_until, self.dom_runs, page_end
        )
        self.expected = await database_sync_to_async(self._expected)()
        self.refresher.replaced()
        records = state.records
        self.builder = TimelineBuilder(all_commits=False)
        self.builder.origin = state.origin
        self.builder.index_commits(state.commits)
        self.views = self.builder.extend(records)
        self.records = records
        self.count_before = state.count - len(records)  # the header counts them all
        self.status = StatusTracker(state.statuses)
        self.status.update(records)
        self.gaps = gap_notices(state.gaps)
        self.findings = None
        found = await self.check(records)
        marked = pin(self.views, found)
        sent, known_until = self.sent, self.known_until
        missing = self.rows.seed(
            self.views, lambda v: v.id in sent or v.id <= known_until, self.shown, self.dom_runs
        )
        self.sent.update(r.id for r in records)
        # The page's tail at most; the events before those that it may lack (the ones cut
        # here, or those not read at all) become a window.
        cut = len(missing) > outline.TAIL
        missing = missing[-outline.TAIL :]
        window = ""
        if missing and (cut or state.behind):
            window = await database_sync_to_async(_gap_window)(
                self.topic, state.page_end, missing[0].record
            )
            if window:
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
        await self._send(parts)

    def _expected(self) -> str | None:
        if self.run_id is not None:
            return Run.objects.filter(pk=self.run_id).values_list("expected", flat=True).first()
        return eventlog.expected_for(self.topic)

    async def forward(self, batch: list[EventRecord]) -> None:
        fresh = [r for r in batch if r.id not in self.sent]
        if not fresh:
            return
        self.sent.update(r.id for r in fresh)
        self.records.extend(fresh)
        self.status.update(fresh)
        if any(r.kind == GAP for r in fresh):
            self.gaps = gap_notices(self.records)
        if self.long:
            unknown = {
                x
                for r in fresh
                if (x := read_xmin(r)) is not None
                and x not in self.builder.commits_by_xmin
                and x not in self.versions_sought
            }
            if unknown:
                self.versions_sought |= unknown  # a version no commit wrote: asked once
                if len(self.versions_sought) > 100_000:
                    self.versions_sought.clear()
                commits = await database_sync_to_async(outline.commits_of_versions)(
                    self.topic, unknown
                )
                self.builder.index_commits(commits)
        views = self.builder.extend(fresh)
        self.views.extend(views)
        parts = [self.rows.place(views, first=self.empty_shown)]
        self.empty_shown = False
        # The header is cheap; the verdict needs the run's row: it waits for the refresh.
        parts.append(await self._status_fragment(header=True, verdict=False))
        await self._send(parts)
        self.refresher.stale()

    async def check(self, records: list[EventRecord]) -> list[Finding]:
        if self.long:  # the maintainer's findings, and the events they name
            found, related = await database_sync_to_async(_stored)(self.topic, self.expected)
            self.related = related
            return found
        return await check_history(records, self.expected)

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
            records = [*self.records, *self.related.values()] if self.long else self.records
            parts.append(fragments.findings_fragment(finding_views(found, records), self.expected))
        return parts

    async def _status_fragment(self, *, header: bool, verdict: bool) -> str:
        """The task header (task page), or the run's verdict (run page)."""
        if self.run_id is None:
            if not header:
                return ""
            count = len(self.records) + (self.count_before if self.long else 0)
            return fragments.header_fragment(self.topic, self.status.current, count, self.gaps)
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


@dataclass
class LongState:
    """What a long page's connection starts from (``_long_state``)."""

    records: list[EventRecord]  # the last events, and every one after the page's
    commits: list[EventRecord]  # the commits whose versions those reads returned
    statuses: list[EventRecord]  # the last commit and the last read with a status
    gaps: list[EventRecord]
    count: int
    origin: datetime | None
    # More than a tail's worth came after ``known_until``: not read, the page may lack
    # events before the last ones.
    behind: bool
    page_end: EventRecord | None  # the newest event the page says it has


LONG_TAIL = 1000  # a long page's last events a connection reads, to extend its last run


def _long_state(
    task_key: str, known_until: int, runs: dict[int, tuple[int, int]], page_end: int
) -> LongState:
    """What a connection to a long history reads, whatever its hello says: the last
    ``LONG_TAIL`` events, at most ``outline.TAIL`` more that came after ``known_until``
    (none when more did), the first reads of the page's runs that end among those (a run
    may have begun before them), and the event ``page_end``."""
    recent = outline.window_events(task_key, None, None, LONG_TAIL, newest=True)
    newer = eventlog.events_after(task_key, known_until, outline.TAIL + 1)
    behind = len(newer) > outline.TAIL
    if behind:
        newer = []
    read = {r.id for r in [*recent, *newer]}
    firsts = set(
        sorted({first for first, (_, last) in runs.items() if last in read} - read)[: outline.TAIL]
    )
    wanted = sorted(firsts | ({page_end} if page_end else set()))
    found = eventlog.events_by_id(wanted) if wanted else {}
    found = {i: r for i, r in found.items() if r.task_key == task_key}
    ends = {i: r for i, r in found.items() if i in firsts}
    by_id = {r.id: r for r in [*ends.values(), *recent, *newer]}
    records = in_time_order(by_id.values())
    versions = {x for r in records if (x := read_xmin(r)) is not None}
    first = outline.span(task_key)
    stats = eventlog.task_stats([task_key]).get(task_key, (0, 0))
    return LongState(
        records=records,
        commits=outline.commits_of_versions(task_key, versions),
        statuses=eventlog.last_statuses(task_key),
        gaps=eventlog.task_gaps(task_key),
        count=stats[0],
        origin=outline.from_us(first[0]) if first else None,
        behind=behind,
        page_end=by_id.get(page_end) or found.get(page_end),
    )


def _gap_window(task_key: str, page_end: EventRecord | None, first_sent: EventRecord) -> str:
    """A window of the events between the page's newest one (None: the start) and the
    first one a catch-up sends, when there are any."""
    after = outline.cursor_of(page_end) if page_end is not None else None
    before = outline.cursor_of(first_sent)
    if after is not None and after >= before:
        return ""
    count = outline.count_between(task_key, after, before)
    return window_html(task_key, after, before, count) if count else ""


def _stored(task_key: str, expected: str | None) -> tuple[list[Finding], dict[int, EventRecord]]:
    found = findings.latest_stored(task_key, expected)
    ids = sorted({i for f in found for i in f.events})
    related = eventlog.events_by_id(ids) if ids else {}
    return found, {i: r for i, r in related.items() if r.task_key == task_key}


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
