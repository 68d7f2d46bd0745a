"""The per-process fan-out: one LiveFeed, many subscribers (the websocket consumers).

daphne runs no ASGI lifespan, so the feed starts on first use, from the running event
loop, and the hub keeps the strong reference to its task. Each subscriber has its own
bounded queue and task, so a slow or failing subscriber neither blocks nor breaks the
others. A subscriber that falls a whole queue behind loses its backlog and is asked to
resync: reload from the table and dedupe by id, as it does when it first subscribes.

A subscriber's protocol::

    hub = get_hub()
    await hub.ensure_started()          # LISTEN is on: what commits from now is delivered
    token = hub.subscribe(key, on_events, on_resync=reload)
    ...read the task's events from the table, then drop delivered ids already shown...
    hub.unsubscribe(token)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lifecycle.events import EventRecord
from lifecycle.feed.listener import LiveFeed, OnEvents, dsn_from_settings

logger = logging.getLogger(__name__)

ALL = "*"  # the topic of every event (the home page)

Callback = Callable[[list[EventRecord]], Awaitable[None]]
Resync = Callable[[], Awaitable[None]]
FeedFactory = Callable[[OnEvents], LiveFeed]


def _default_feed(on_events: OnEvents) -> LiveFeed:
    return LiveFeed(dsn_from_settings(), on_events)


@dataclass(eq=False)
class Subscription:
    """The token ``subscribe`` returns. ``None`` in the queue means: resync."""

    topic: str
    callback: Callback
    on_resync: Resync | None
    queue: asyncio.Queue[list[EventRecord] | None]
    task: asyncio.Task[None] | None = None
    overflows: int = 0
    errors: int = 0


class Hub:
    """One LiveFeed fanned out to subscribers by task key; one per process, ``get_hub()``."""

    def __init__(self, feed_factory: FeedFactory = _default_feed, *, queue_size: int = 256):
        self.feed_factory = feed_factory
        self.queue_size = queue_size
        self.feed: LiveFeed | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._topics: dict[str, set[Subscription]] = {}

    async def ensure_started(self, timeout: float = 10.0) -> None:
        """Start the feed if needed and wait until its LISTEN is on and it has caught up.

        Raises TimeoutError if the database cannot be reached in ``timeout`` seconds; the
        feed keeps trying in the background.
        """
        feed = self._start()
        await asyncio.wait_for(feed.connected.wait(), timeout)

    def subscribe(
        self, topic: str, callback: Callback, *, on_resync: Resync | None = None
    ) -> Subscription:
        """Call ``callback`` with each batch of events of ``topic`` (a task key, or ``*``)."""
        self._start()
        sub = Subscription(topic, callback, on_resync, asyncio.Queue(self.queue_size))
        sub.task = asyncio.get_running_loop().create_task(self._pump(sub))
        self._topics.setdefault(topic, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._topics[sub.topic]
        if sub.task is not None:
            sub.task.cancel()

    async def stop(self) -> None:
        """Stop the feed and every subscriber (tests, shutdown)."""
        tasks = [s.task for subs in self._topics.values() for s in subs if s.task]
        for sub in [s for subs in self._topics.values() for s in subs]:
            self.unsubscribe(sub)
        if self._task is not None:
            self._task.cancel()
            tasks.append(self._task)
        if tasks:
            await asyncio.wait(tasks)
        self.feed = self._task = self._loop = None

    def _start(self) -> LiveFeed:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a test's): whatever ran on the old one is gone.
            self._topics.clear()
            self.feed = self._task = None
            self._loop = loop
        if self._task is None or self._task.done():
            self.feed = self.feed_factory(self.dispatch)
            self._task = loop.create_task(self.feed.run(), name="lifecycle-feed")
            self._task.add_done_callback(_log_end)
        assert self.feed is not None
        return self.feed

    async def dispatch(self, events: list[EventRecord]) -> None:
        """Queue each subscriber its part of one batch; never waits on a subscriber."""
        by_topic: dict[str, list[EventRecord]] = {ALL: events}
        for event in events:
            by_topic.setdefault(event.task_key, []).append(event)
        for topic, batch in by_topic.items():
            for sub in self._topics.get(topic, ()):
                self._offer(sub, batch)

    def _offer(self, sub: Subscription, batch: list[EventRecord]) -> None:
        try:
            sub.queue.put_nowait(batch)
        except asyncio.QueueFull:
            # Fallen a whole queue behind: drop the backlog and this batch, and ask for a
            # reload from the table instead, which will hold all of them.
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)
            sub.overflows += 1
            logger.warning("subscriber of %r fell behind; asking it to resync", sub.topic)

    async def _pump(self, sub: Subscription) -> None:
        while True:
            batch = await sub.queue.get()
            try:
                if batch is not None:
                    await sub.callback(batch)
                elif sub.on_resync is not None:
                    await sub.on_resync()
            except Exception:
                sub.errors += 1
                logger.exception("subscriber of %r failed", sub.topic)


def _log_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("live feed stopped", exc_info=task.exception())


_hub: Hub | None = None


def get_hub() -> Hub:
    """The process's hub (created on first call; the feed starts on first use)."""
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub
