"""The home page's catch-up is shared by the callers that ask before it begins, and never
by one that asks after it began (it may have read before that caller subscribed)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dashboard.consumers import Shared

pytestmark = pytest.mark.unit


async def test_callers_before_it_begins_share_it_and_a_caller_after_gets_its_own() -> None:
    version = {"now": 1}
    began = threading.Event()
    release = threading.Event()
    calls = []

    def compute() -> int:
        calls.append(version["now"])
        if len(calls) == 1:
            began.set()
            assert release.wait(10)
        return version["now"] if len(calls) > 1 else calls[0]

    shared = Shared(compute)
    # Three callers at once: one computation for the three
    first = [asyncio.ensure_future(shared()) for _ in range(3)]
    await asyncio.to_thread(began.wait, 10)
    # The database changes, then a fourth caller asks while the first one is reading
    version["now"] = 2
    fourth = asyncio.ensure_future(shared())
    await asyncio.sleep(0.05)
    release.set()
    assert await asyncio.gather(*first) == [1, 1, 1]
    assert await fourth == 2  # its own reading, begun after it asked
    assert calls == [1, 2]


async def test_a_failure_reaches_every_caller_that_shared_it() -> None:
    def compute() -> int:
        raise RuntimeError("the database went away")

    shared = Shared(compute)
    results = await asyncio.gather(shared(), shared(), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    # And the next caller tries again
    shared.compute = lambda: 7
    assert await shared() == 7
