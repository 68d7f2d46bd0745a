"""The per-process hub's fan-out, driven by hand with a feed that never reads."""

from __future__ import annotations

import asyncio

import pytest

from lifecycle.events import EventRecord
from lifecycle.feed.hub import Hub
from lifecycle.feed.listener import LiveFeed
from tests.waiting import wait_until

pytestmark = pytest.mark.unit


class IdleFeed(LiveFeed):
    """A feed that never reads: the hub's fan-out is driven by hand."""

    async def run(self) -> None:
        self.connected.set()
        await asyncio.Event().wait()


async def test_hub_asks_a_subscriber_that_fell_behind_to_resync() -> None:
    hub = Hub(lambda on_events: IdleFeed("", on_events), queue_size=3)
    release = asyncio.Event()
    slow_got: list[int] = []
    fast_got: list[int] = []
    resyncs: list[int] = []

    async def slow(events: list[EventRecord]) -> None:
        await release.wait()
        slow_got.extend(e.id for e in events)

    async def fast(events: list[EventRecord]) -> None:
        fast_got.extend(e.id for e in events)

    async def resync() -> None:
        resyncs.append(len(slow_got))

    try:
        await hub.ensure_started()
        hub.subscribe("t", slow, on_resync=resync)
        hub.subscribe("t", fast)
        # Given a subscriber stuck on its first batch
        await hub.dispatch([EventRecord(1, "probe", "read", "t")])
        await wait_until(lambda: fast_got == [1], "the first batch")
        # When more batches come than its queue holds
        for i in range(2, 6):
            await hub.dispatch([EventRecord(i, "probe", "read", "t")])
            # Then the others are not held back
            await wait_until(lambda: fast_got[-1] == i, f"batch {i}")  # noqa: B023
        release.set()
        # And the slow one, once free, is told to reload instead of getting a partial backlog
        await wait_until(lambda: resyncs == [1], "the resync")
        await hub.dispatch([EventRecord(8, "probe", "read", "t")])
        await wait_until(lambda: slow_got[-1:] == [8], "the next batch")
        assert slow_got == [1, 8]
    finally:
        await hub.stop()
