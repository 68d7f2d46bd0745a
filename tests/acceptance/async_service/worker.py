"""The tasks service's worker: ``async def`` actors on Dramatiq's AsyncIO middleware, each
unit of work in its own ``AsyncSession``.

    LIFECYCLE_PROCESS_ROLE=worker python -m dramatiq worker --processes 1 --threads 4

Modes (the task's ``mode`` column) choose what the work does:
- ``ok``: RUNNING, the LLM answers, COMPLETED.
- ``swallowed_error``: the LLM client swallows its error (engine.py); COMPLETED anyway.
- ``flush_without_commit``: COMPLETED is flushed, and the session closes without a commit.
- ``slow``: like ok, with a second of work (the API's identity-map route is polled on it).
- ``savepoint``: each status written inside ``begin_nested()`` (a savepoint), a second of
  work in between.
"""

from __future__ import annotations

import asyncio
import uuid

import dramatiq
from broker import QUEUE
from engine import LLMClient
from models import Status, Task, make_sessions
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_sessions: async_sessionmaker[AsyncSession] | None = None


def sessions() -> async_sessionmaker[AsyncSession]:
    # Made on first use, inside the AsyncIO middleware's event loop that runs every actor.
    global _sessions
    if _sessions is None:
        _sessions = make_sessions("tasks-worker")
    return _sessions


async def set_status(session: AsyncSession, task: Task, status: Status, nested: bool) -> None:
    if nested:
        async with session.begin_nested():
            task.status = status
    else:
        task.status = status
    await session.commit()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
async def process_task(task_id: str) -> None:
    async with sessions()() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        if task is None:
            raise LookupError(f"task {task_id} does not exist")
        nested = task.mode == "savepoint"
        await set_status(session, task, Status.RUNNING, nested)
        if task.mode in ("slow", "savepoint"):
            await asyncio.sleep(1.0)
        task.result = await LLMClient().complete(
            f"summarise {task_id}", fail=task.mode == "swallowed_error"
        )
        if task.mode == "flush_without_commit":
            # BUG: written and flushed, then the session closes without a commit.
            task.status = Status.COMPLETED
            await session.flush()
            return
        await set_status(session, task, Status.COMPLETED, nested)
