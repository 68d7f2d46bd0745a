"""The live feed: one LISTEN connection that reads ``lifecycle_event``'s new rows, each once.

On every (re)connect it runs ``LISTEN`` first, then reads from the table what it has not
seen, then waits for notifications. A notification only says "look again": the rows are
always read from the table, and every read also polls (on a timer), so a lost NOTIFY costs
latency, never an event.

Event ids are not commit order: ids 10 and 11 are taken by two transactions and 11 commits
first. So the position is not one id but ``high`` (the largest id delivered) plus ``gaps``
(ids below ``high`` not seen yet). A gap is delivered when its row shows up, and given up
only once it is provably dead:

1. After a grace period, which covers the microseconds between the writer's ``nextval()``
   and its transaction id being assigned, the holder of the id has a transaction id.
2. The feed then takes a *bound*: a fresh transaction id of its own
   (``pg_current_xact_id()``), larger than every transaction id assigned so far, so
   larger than the holder's.
3. Once a later snapshot's xmin is above the bound, every transaction up to it has ended;
   the id's row is still not visible in that snapshot, so its transaction rolled back.

The snapshot's xmax is not such a bound: it is the latest *completed* transaction id plus
one, and a running transaction may have a larger id than that (another transaction took an
id in between and has not ended). Once that one ends, xmin can pass the old xmax while the
holder still runs; its event would be lost. The bound costs one transaction id per round of gaps
older than the grace period, which a steady feed without rollbacks never pays.

This assumes an id is used by a transaction right after ``nextval()`` (a column default,
sequence cache 1), which holds for every writer of ``lifecycle_event``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from lifecycle import sql
from lifecycle.events import NOTIFY_CHANNEL, EventRecord
from lifecycle.runtime.database import conninfo, first_line, noticing_loss

logger = logging.getLogger(__name__)

APPLICATION_NAME = "lifecycle-feed"

OnEvents = Callable[[list[EventRecord]], Awaitable[None]]

FEED = sql.load("feed")


def dsn_from_settings(application_name: str = APPLICATION_NAME) -> str:
    """Django's database, as the feed connects to it (see lifecycle.runtime.database)."""
    return conninfo(application_name=application_name)


@dataclass
class Gap:
    """An id below ``high`` whose row has not been seen."""

    first_seen: float  # time.monotonic()
    bound: int | None = None  # a transaction id above its holder's, taken after the grace


class FeedState:
    """Which ids were delivered: everything up to ``high`` except ``gaps``. Pure, no I/O."""

    def __init__(self, high: int, *, grace: float = 1.0, max_gaps: int = 50_000) -> None:
        self.high = high
        self.gaps: dict[int, Gap] = {}  # ascending ids, in insertion order
        self.grace = grace
        self.max_gaps = max_gaps
        self.expired = 0  # gaps proven dead (their transaction rolled back)
        self.dropped = 0  # gaps given up unproven because there were too many

    def wants(self, ids: Iterable[int]) -> bool:
        """Whether any of these ids (from notifications) is not delivered yet."""
        return any(i > self.high or i in self.gaps for i in ids)

    def needs_bound(self, now: float) -> bool:
        """Whether a gap has outlived the grace period and has no bound yet."""
        return any(g.bound is None and now - g.first_seen >= self.grace for g in self.gaps.values())

    def observe(self, ids: list[int], now: float) -> list[int]:
        """Take the ascending ids one fetch returned; return those to deliver."""
        fresh: list[int] = []
        for i in ids:
            if i > self.high:
                self.open_gaps(self.high + 1, i, now)
                self.high = i
                fresh.append(i)
            elif self.gaps.pop(i, None) is not None:
                fresh.append(i)
        return fresh

    def settle(self, *, xmin: int, bound: int | None, asked_at: float) -> None:
        """Apply what one fetch proved, after ``observe`` took its rows.

        The fetch returned every gap visible to its snapshot, whose xmin is ``xmin``;
        ``bound`` is the transaction id it took, if it was asked for one at ``asked_at``.
        """
        dead = [i for i, gap in self.gaps.items() if gap.bound is not None and xmin > gap.bound]
        for i in dead:
            del self.gaps[i]
        self.expired += len(dead)
        if bound is not None:
            for gap in self.gaps.values():
                if gap.bound is None and asked_at - gap.first_seen >= self.grace:
                    gap.bound = bound

    def open_gaps(self, start: int, stop: int, now: float) -> None:
        """Mark the ids in ``range(start, stop)`` as not seen yet."""
        if stop - start > self.max_gaps:
            self._give_up(stop - start - self.max_gaps, f"{start}..{stop - self.max_gaps - 1}")
            start = stop - self.max_gaps
        for i in range(start, stop):
            self.gaps[i] = Gap(now)
        excess = len(self.gaps) - self.max_gaps
        if excess > 0:
            oldest = list(itertools.islice(self.gaps, excess))
            for i in oldest:
                del self.gaps[i]
            self._give_up(excess, f"{oldest[0]}..{oldest[-1]}")

    def _give_up(self, count: int, ids: str) -> None:
        self.dropped += count
        logger.warning(
            "more than %d unseen event ids: giving up %d of them (%s); "
            "any of these that commits later will not be delivered",
            self.max_gaps,
            count,
            ids,
        )


class LiveFeed:
    """Read ``lifecycle_event``'s rows as they commit and hand each event to ``on_events`` once.

    Events arrive in batches (what one fetch returned), in arrival order: ascending ids,
    except that an event whose transaction committed late comes when it commits. Run
    ``run()`` in its own task; it reconnects by itself and ends only when cancelled.
    ``start_after=None`` starts after the last id handed out (only new events).
    """

    def __init__(
        self,
        dsn: str,
        on_events: OnEvents,
        start_after: int | None = None,
        *,
        ping_interval: float = 2.0,
        gap_poll_interval: float = 0.5,
        grace: float = 1.0,
        max_gaps: int = 50_000,
        batch_size: int = 1000,
        query_timeout: float = 5.0,
        start_lookback: int = 1000,
        application_name: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.on_events = on_events
        self.ping_interval = ping_interval
        self.gap_poll_interval = gap_poll_interval
        self.batch_size = batch_size
        self.query_timeout = query_timeout
        self.start_lookback = start_lookback
        self.application_name = application_name
        self.state: FeedState | None = None
        self._grace, self._max_gaps = grace, max_gaps
        if start_after is not None:
            self.state = FeedState(start_after, grace=grace, max_gaps=max_gaps)

        self.connected = asyncio.Event()  # set once LISTEN is on and the table read
        self.backend_pid: int | None = None
        self.last_disconnect: float | None = None  # time.monotonic() the loss was noticed
        self.fetches = 0
        self.notifies = 0
        self.delivered = 0
        self.reconnects = 0  # successful connections after the first
        self.connection_errors = 0
        self.callback_errors = 0
        self._connections = 0
        self._task: asyncio.Task[None] | None = None

    def stats(self) -> dict[str, int]:
        state = self.state
        return {
            "fetches": self.fetches,
            "notifies": self.notifies,
            "delivered": self.delivered,
            "reconnects": self.reconnects,
            "connection_errors": self.connection_errors,
            "callback_errors": self.callback_errors,
            "high": state.high if state else 0,
            "gaps": len(state.gaps) if state else 0,
            "gaps_expired": state.expired if state else 0,
            "gaps_dropped": state.dropped if state else 0,
        }

    async def run(self) -> None:
        self._task = asyncio.current_task()
        delay = 0.1
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await self._connect()
                await self._start(conn)
                delay = 0.1
                await self._listen(conn)
            except (psycopg.Error, TimeoutError) as exc:
                self.connection_errors += 1
                if self.connected.is_set():
                    self.last_disconnect = time.monotonic()
                reason = first_line(exc)
                logger.warning("live feed: %s; reconnecting in %.1fs", reason, delay)
            finally:
                self.connected.clear()
                if conn is not None:
                    await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def stop(self) -> None:
        """Cancel ``run()`` and wait until it has closed its connection."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        if task is not asyncio.current_task():
            await asyncio.wait([task])

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        options: dict[str, Any] = {}
        if self.application_name:
            options["application_name"] = self.application_name
        return await psycopg.AsyncConnection.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=5,
            **noticing_loss(idle=5, interval=2, user_timeout=self.query_timeout),
            **options,
        )

    async def _start(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # LISTEN before reading: whatever commits from now on is either read below or
        # notified afterwards.
        await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self.backend_pid = conn.info.backend_pid
        if self.state is None:
            self.state = await self._start_position(conn)
        await self._catch_up(conn)
        self._connections += 1
        self.reconnects = self._connections - 1
        self.connected.set()

    async def _start_position(self, conn: psycopg.AsyncConnection[Any]) -> FeedState:
        async with asyncio.timeout(self.query_timeout):
            cur = await conn.execute(FEED["start"], {"lookback": self.start_lookback})
            row = await cur.fetchone()
        assert row is not None
        last, seen = row[0], set(row[1])
        state = FeedState(last, grace=self._grace, max_gaps=self._max_gaps)
        now = time.monotonic()
        for i in range(max(1, last - self.start_lookback + 1), last + 1):
            if i not in seen:
                state.gaps[i] = Gap(now)
        return state

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        assert self.state is not None
        last_fetch = time.monotonic()
        while True:
            interval = self.gap_poll_interval if self.state.gaps else self.ping_interval
            wake = last_fetch + interval
            payloads = [
                n.payload
                async for n in conn.notifies(
                    timeout=max(0.0, wake - time.monotonic()), stop_after=1
                )
            ]
            if payloads:
                # Coalesce a burst: take what has arrived meanwhile, then fetch once.
                payloads += [n.payload async for n in conn.notifies(timeout=0)]
                self.notifies += len(payloads)
            # The timed fetch is also the ping: a dead connection fails it.
            if time.monotonic() >= wake or self._wants(payloads):
                await self._catch_up(conn)
                last_fetch = time.monotonic()

    def _wants(self, payloads: list[str]) -> bool:
        assert self.state is not None
        # Only a plain decimal id may let the fetch be skipped ("+5", " 5", "٥" must not).
        if not all(p.isascii() and p.isdigit() for p in payloads):
            return True
        return self.state.wants(int(p) for p in payloads)

    async def _catch_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Fetch until the table has nothing more for us, delivering each batch."""
        state = self.state
        assert state is not None
        while True:
            asked_at = time.monotonic()
            params = {
                "high": state.high,
                "gaps": list(state.gaps),
                "limit": self.batch_size,
                "bound": state.needs_bound(asked_at),
            }
            async with asyncio.timeout(self.query_timeout):
                cur = await conn.execute(FEED["fetch"], params)
                rows = await cur.fetchall()
            self.fetches += 1
            # Each row: the snapshot's xmin, the bound, then the event (id first) or NULLs.
            found = [row[2:] for row in rows if row[2] is not None]
            new = sum(1 for row in found if row[0] > state.high)
            fresh = set(state.observe([row[0] for row in found], time.monotonic()))
            state.settle(xmin=rows[0][0], bound=rows[0][1], asked_at=asked_at)
            events = [EventRecord.from_row(row) for row in found if row[0] in fresh]
            if events:
                await self._deliver(events)
            if new < self.batch_size:
                return

    async def _deliver(self, events: list[EventRecord]) -> None:
        self.delivered += len(events)
        try:
            await self.on_events(events)
        except Exception:
            # The events count as delivered: redelivering them would break exactly-once
            # for a callback that failed halfway.
            self.callback_errors += 1
            logger.exception(
                "live feed: on_events failed for events %d..%d", events[0].id, events[-1].id
            )
