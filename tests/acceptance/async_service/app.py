"""The tasks service's API: FastAPI, served by uvicorn, one ``AsyncSession`` per request.

    LIFECYCLE_PROCESS_ROLE=api uvicorn app:app

- ``POST /tasks`` ``{"mode": ...}``: creates a task, commits, then enqueues it.
- ``GET /tasks/{id}``: the task, read through ``aread_object`` (reported with its version).
- ``GET /tasks/{id}/wait``: while the task runs, waits up to 2 s for it to finish,
  re-reading it in the request's session (BUG: its identity map hands back the object it
  loaded first).
- ``GET /reports/tasks/{id}/wait``: the same on the reporting engine, whose transactions are
  REPEATABLE READ (BUG: its snapshot never sees the finish either).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from broker import broker  # noqa: F401  (the broker, before the actors)
from fastapi import Depends, FastAPI, HTTPException
from models import Status, Task, make_sessions
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from worker import process_task

from lifecycle.client import aread_object, task_context

app = FastAPI(title="tasks")
Sessions = make_sessions("tasks-api")
Snapshots = make_sessions("tasks-api", isolation_level="REPEATABLE READ")
CLIENT = "tasks-api"


async def session() -> Any:
    async with Sessions() as s:
        yield s


Db = Annotated[AsyncSession, Depends(session)]


class NewTask(BaseModel):
    mode: str = "ok"


def answer(task: Task) -> dict[str, Any]:
    return {"id": str(task.id), "status": task.status.value, "result": task.result}


@app.post("/tasks", status_code=201)
async def create(new: NewTask, s: Db) -> dict[str, Any]:
    task = Task(id=uuid.uuid4(), mode=new.mode, status=Status.PENDING)
    s.add(task)
    await s.commit()
    process_task.send(str(task.id))
    return answer(task)


async def found(s: AsyncSession, task_id: uuid.UUID) -> Task:
    with task_context(str(task_id)):
        task = await aread_object(s, Task, task_id, client=CLIENT)
    if task is None:
        raise HTTPException(404, "no such task")
    return task


@app.get("/tasks/{task_id}")
async def read(task_id: uuid.UUID, s: Db) -> dict[str, Any]:
    return answer(await found(s, task_id))


async def wait_while_running(s: AsyncSession, task_id: uuid.UUID) -> Task:
    """Long-poll: while the task runs, wait up to 2 s for it to finish, re-reading it.

    BUG: every re-read goes through the same session. Its identity map already holds the
    task, so SQLAlchemy hands back that object with the attributes it loaded first (it
    would take ``populate_existing`` to refresh them): the finish is never seen."""
    task = await found(s, task_id)
    for _ in range(20):
        if task.status is not Status.RUNNING:
            break
        await asyncio.sleep(0.1)
        task = await found(s, task_id)
    return task


@app.get("/tasks/{task_id}/wait")
async def wait(task_id: uuid.UUID, s: Db) -> dict[str, Any]:
    return answer(await wait_while_running(s, task_id))


@app.get("/reports/tasks/{task_id}/wait")
async def report_wait(task_id: uuid.UUID) -> dict[str, Any]:
    # BUG: the reporting engine's REPEATABLE READ ("consistent reports"): the first read's
    # snapshot is every later read's, so the finish is not even in the row it reads.
    async with Snapshots() as s:
        return answer(await wait_while_running(s, task_id))
