"""Waiting for a condition in an asyncio test, with a message that says what never came."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def wait_until(condition: Callable[[], Any], what: str, timeout: float = 5.0) -> float:
    """Wait for ``condition()`` to hold; return the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start
