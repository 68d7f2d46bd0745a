"""The task a thread (or asyncio task) is working on, for events that do not name one.

The Dramatiq middleware sets it around each message; the API sets it around a request with
``task_context``. The log handler reads it to tie a WARNING+ record to its task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_task: ContextVar[str | None] = ContextVar("lifecycle_current_task", default=None)


@contextmanager
def task_context(key: str | None) -> Iterator[None]:
    """Mark the code in the ``with`` block as working on task ``key``."""
    token = current_task.set(key)
    try:
        yield
    finally:
        current_task.reset(token)
