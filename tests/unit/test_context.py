"""An attempt's identity follows its work into other threads: Dramatiq's AsyncIO event loop,
``asyncio.to_thread``, and a pool fed through ``carry``; what is logged there names it.

Given/When/Then over the client's own pieces and Dramatiq's real ``EventLoopThread`` (no
broker: the middleware's hooks are called the way Dramatiq's worker calls them)."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dramatiq.asyncio import EventLoopThread

from lifecycle.client import carry, current_attempt, current_task
from lifecycle.client.dramatiq_middleware import LifecycleEvents
from lifecycle.client.logs import LifecycleLogHandler
from tests.published import Published

pytestmark = pytest.mark.unit


class Message:
    def __init__(self, message_id: str, retries: int = 0) -> None:
        self.message_id, self.actor_name, self.queue_name = message_id, "work", "default"
        self.options: dict[str, Any] = {"retries": retries}
        self.args: tuple[Any, ...] = ()
        self.kwargs = {"task_id": "task-7"}


@pytest.fixture
def loop_thread() -> Any:
    thread = EventLoopThread(logging.getLogger("test.loop"))
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def recorded() -> Any:
    """The middleware and the log handler on one recorder; the handler on a logger."""
    recorder = Published()
    handler = LifecycleLogHandler("worker", publisher=recorder)  # type: ignore[arg-type]
    logger = logging.getLogger("test.actor")
    logger.addHandler(handler)
    logger.propagate = False
    yield LifecycleEvents(publisher=recorder), logger, recorder  # type: ignore[arg-type]
    logger.removeHandler(handler)


def in_worker_thread(fn: Any) -> Any:
    """Run ``fn`` on a fresh thread, as Dramatiq's worker threads are; return its result."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), name="Thread-6")
    thread.start()
    thread.join(10)
    return out[0]


def logs(recorder: Published) -> list[dict[str, Any]]:
    return [m["body"] for m in recorder.messages if m["source"] == "log"]


def test_an_async_actors_warning_names_its_attempt_from_the_event_loop_thread(
    loop_thread: EventLoopThread, recorded: Any
) -> None:
    middleware, logger, recorder = recorded

    async def actor() -> str:
        await asyncio.sleep(0)
        logger.warning("LLM call failed", exc_info=ValueError("timed out"))
        return threading.current_thread().name

    def process() -> str:
        # Given the worker thread's hooks around the coroutine, as Dramatiq runs them
        message = Message("m-1", retries=2)
        middleware.before_process_message(None, message)
        try:
            # When the AsyncIO middleware's event loop runs the actor
            return loop_thread.run_coroutine(actor())
        finally:
            middleware.after_process_message(None, message)

    ran_on = in_worker_thread(process)
    # Then the warning was logged on the loop's thread, and names the task and the attempt
    (body,) = logs(recorder)
    assert ran_on != "Thread-6" and body["thread"] == ran_on
    assert (body["message_id"], body["attempt"]) == ("m-1", 3)
    assert [m["task"] for m in recorder.messages] == ["task-7", "task-7"]  # start, warning
    # And the worker thread is clean for the next message
    assert current_attempt.get() is None and current_task.get() is None


def test_work_handed_to_threads_names_its_attempt(recorded: Any) -> None:
    middleware, logger, recorder = recorded

    async def actor() -> None:
        await asyncio.to_thread(logger.error, "from to_thread")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, carry(logger.error), "from run_in_executor")

    def sync_actor() -> None:
        asyncio.run(actor())  # a sync actor that runs its async code itself
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(carry(logger.error), ["from a pool", "from a pool"]))

    def process() -> None:
        message = Message("m-2")
        middleware.before_process_message(None, message)
        try:
            sync_actor()
        finally:
            middleware.after_process_message(None, message)

    in_worker_thread(process)
    bodies = logs(recorder)
    assert sorted(b["message"] for b in bodies) == [
        "from a pool",
        "from a pool",
        "from run_in_executor",
        "from to_thread",
    ]
    assert {(b["message_id"], b["attempt"]) for b in bodies} == {("m-2", 1)}
    assert len({b["thread"] for b in bodies}) >= 2  # really from other threads


def test_without_carry_a_pool_thread_knows_no_task(recorded: Any) -> None:
    # The limit the README states: Executor.submit does not copy the context
    middleware, logger, recorder = recorded

    def process() -> None:
        message = Message("m-3")
        middleware.before_process_message(None, message)
        try:
            with ThreadPoolExecutor(1) as pool:
                pool.submit(logger.error, "lost").result()
        finally:
            middleware.after_process_message(None, message)

    in_worker_thread(process)
    assert logs(recorder) == []


def test_a_read_reported_during_an_attempt_names_it(monkeypatch: Any) -> None:
    from lifecycle.client import reads

    recorder = Published()
    monkeypatch.setattr(reads, "get_publisher", lambda: recorder)
    token = current_attempt.set(("m-4", 2))
    try:
        reads.report_read("task-9", "RUNNING", xmin=5)
    finally:
        current_attempt.reset(token)
    reads.report_read("task-9", "RUNNING", xmin=5)
    first, second = (m["body"] for m in recorder.messages)
    assert (first["message_id"], first["attempt"]) == ("m-4", 2)
    assert "message_id" not in second
