"""What a thread (or asyncio task) is working on, for events that do not name it.

- ``current_task``: the task key. The Dramatiq middleware sets it around each message; the
  API sets it around a request with ``task_context``. The log handler reads it to tie a
  WARNING+ record to its task.
- ``current_attempt``: the delivery being processed, ``(message id, attempt number)``, set by
  the middleware. Log records and reads made while it is set carry it, so the checker ties
  them to their attempt whichever thread ran them.

Both are ``contextvars``, so they follow the work wherever Python copies the context:

- Dramatiq's ``AsyncIO`` middleware runs an ``async def`` actor with
  ``asyncio.run_coroutine_threadsafe`` on its event-loop thread. ``call_soon_threadsafe``
  copies the worker thread's context into the callback that creates the task, and the
  task copies it again, so the coroutine sees the attempt (``tests/unit/test_context.py``
  holds Dramatiq to this).
- ``asyncio.to_thread`` copies it; ``loop.run_in_executor`` and ``Executor.submit`` do not:
  hand them ``carry(fn)`` instead of ``fn``.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

current_task: ContextVar[str | None] = ContextVar("lifecycle_current_task", default=None)
current_attempt: ContextVar[tuple[str, int] | None] = ContextVar(
    "lifecycle_current_attempt", default=None
)

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def task_context(key: str | None) -> Iterator[None]:
    """Mark the code in the ``with`` block as working on task ``key``."""
    token = current_task.set(key)
    try:
        yield
    finally:
        current_task.reset(token)


def attempt_fields() -> dict[str, object]:
    """``message_id`` and ``attempt`` of the delivery being processed, for an event's body
    (empty outside one)."""
    attempt = current_attempt.get()
    if attempt is None:
        return {}
    return {"message_id": attempt[0], "attempt": attempt[1]}


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to a copy of the caller's context: what it logs or reads in another
    thread (``executor.submit(carry(fn))``, ``loop.run_in_executor(None, carry(fn))``)
    belongs to the caller's task and attempt."""
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        # A copy per call: one context cannot be entered by two threads at once
        # (``executor.map(carry(fn), items)``).
        return context.copy().run(fn, *args, **kwargs)

    return run
