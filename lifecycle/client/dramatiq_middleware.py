"""Dramatiq middleware that publishes each broker step of a message as a lifecycle event.

Kinds: ``enqueue`` (or ``retry`` when the Retries middleware re-enqueues), ``start``,
``ack``, ``fail``, ``nack`` and ``skip``. Every hook swallows its own errors: an event
that cannot be published is counted and logged, and the worker carries on.

``enqueue`` is stamped before the publish (a worker may start the message before the
enqueuing thread runs again). ``ack`` comes from Dramatiq's ``after_ack``, once RabbitMQ
was told, not when the actor returned: a worker killed in between never acked, RabbitMQ
redelivers, and the timeline shows exactly that. A failed attempt that Retries hands back
is acked too; its ``fail`` and ``retry`` tell its story, so that ack is not reported.

Which task a message is about: by default ``message.kwargs["task_id"]``, else the first
positional argument, else the message id. Another app points the setting
``LIFECYCLE_TASK_KEY`` at its own ``(message) -> str`` function (a dotted path), or passes
``task_key=`` to ``LifecycleEvents``. The key published is that one after
``LIFECYCLE_KEY_PREFIX`` (``config.task_key``).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import dramatiq
from dramatiq.common import q_name

from lifecycle.client import config, messages
from lifecycle.client.context import current_attempt, current_task
from lifecycle.client.publisher import Publisher, get_publisher

logger = logging.getLogger(__name__)

TaskKey = Callable[[Any], str]
# Stored on the MessageProxy at start, read by ack, fail and nack: the task's key as
# published and the events' body (message id, actor, queue, attempt, pid, the worker thread
# that ran it: the ack comes from another), worked out once per message. The start and the
# ack events share that body: the publisher encodes it, and nothing changes it.
_EVENT = "_lifecycle_event"
_SUCCEEDED = "_lifecycle_succeeded"  # the actor returned: its ack is an ``ack`` event
_DELAYED = "lifecycle_delayed"  # message option: this message went through a delay queue


def default_task_key(message: Any) -> str:
    """The task a message works on: kwargs ``task_id``, else the first argument, else its id."""
    task_id = message.kwargs.get("task_id") if message.kwargs else None
    if task_id is not None:
        return str(task_id)
    if message.args:
        return str(message.args[0])
    return str(message.message_id)


def _configured_task_key() -> TaskKey:
    """The function named by the setting ``LIFECYCLE_TASK_KEY``, else ``default_task_key``."""
    path = config.setting("LIFECYCLE_TASK_KEY")
    if not path:
        return default_task_key
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
        if not callable(found):
            raise TypeError(f"{path} is not a function")
    except Exception as exc:  # any failure of theirs: a default key beats no event at all
        logger.warning(
            "lifecycle middleware: LIFECYCLE_TASK_KEY=%r is unusable (%s: %s); "
            "using the default task key",
            path,
            type(exc).__name__,
            exc,
        )
        return default_task_key
    return cast(TaskKey, found)


class LifecycleEvents(dramatiq.Middleware):
    """Publish ``broker`` events for enqueue, start, ack, fail, retry, nack and skip."""

    def __init__(
        self, *, task_key: TaskKey | None = None, publisher: Publisher | None = None
    ) -> None:
        self._task_key = task_key
        self._publisher = publisher
        self._moving = threading.local()
        self.errors = 0  # hooks that failed (and were swallowed)

    def task_key(self, message: Any) -> str:
        if self._task_key is None:
            self._task_key = _configured_task_key()
        return self._task_key(message)

    @property
    def publisher(self) -> Publisher:
        return self._publisher or get_publisher()

    # -- hooks ------------------------------------------------------------------------------

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        # A delayed message is enqueued twice: onto the delay queue (the step we report), then
        # by a worker moving it to its queue when due. The mark tells the second one apart.
        try:
            # Stamped before the publish: once it is out, a worker may start the message
            # before this thread runs again, and its ``start`` must not come first.
            self._moving.enqueue = (message.message_id, time.time())
            if delay is not None:
                message.options[_DELAYED] = True
            elif message.options.pop(_DELAYED, False):
                self._moving.message_id = message.message_id
        except Exception:
            self._swallow("before_enqueue")

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        stamped = getattr(self._moving, "enqueue", None)
        self._moving.enqueue = None
        if getattr(self._moving, "message_id", None) == message.message_id:
            self._moving.message_id = None
            return
        at = stamped[1] if stamped and stamped[0] == message.message_id else None
        retries = message.options.get("retries") or 0
        kind = "retry" if retries > 0 else "enqueue"
        self._emit(kind, message, at=at, attempt=retries + 1, delay=delay)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            attempt = (message.options.get("retries") or 0) + 1
            key = self.task_key(message)
            event = (config.task_key(key), self._body(message, attempt))
            setattr(message, _EVENT, event)
            current_task.set(key)
            # What the attempt logs or reads carries its identity, whichever thread runs it
            # (an ``async def`` actor runs on the AsyncIO middleware's event-loop thread).
            current_attempt.set((str(message.message_id), attempt))
        except Exception:
            self._swallow("before_process_message")
        self._emit("start", message)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            try:
                setattr(message, _SUCCEEDED, True)  # reported once acked (after_ack)
            except Exception:
                self._swallow("after_process_message")
        else:
            self._emit("fail", message, exception=repr(exception)[:2000])
        current_task.set(None)
        current_attempt.set(None)

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        if getattr(message, _SUCCEEDED, False):
            self._emit("ack", message)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._emit("skip", message)
        current_task.set(None)
        current_attempt.set(None)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        self._emit("nack", message)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Dramatiq's worker processes end with os._exit, so atexit never runs there: wait
        # here for every buffered event's confirm (LIFECYCLE_SHUTDOWN_FLUSH at most).
        try:
            self.publisher.close()
        except Exception:
            self._swallow("after_worker_shutdown")

    # -- helpers ----------------------------------------------------------------------------

    def _emit(self, kind: str, message: Any, *, at: float | None = None, **extra: Any) -> None:
        try:
            event = getattr(message, _EVENT, None)
            if event is None:  # not a message this worker started (enqueue, retry, skip)
                task = config.task_key(self.task_key(message))
                body = self._body(message, (message.options.get("retries") or 0) + 1)
            else:
                task, body = event
            if extra:
                body = {**body, **extra}
            publisher = self.publisher
            emit = getattr(publisher, "emit", None)
            if emit is not None:
                emit("broker", kind, task, body, at=at)
            else:  # a publisher of one's own, with ``publish`` only
                when = datetime.fromtimestamp(at, UTC) if at is not None else None
                publisher.publish(
                    messages.make_message(source="broker", kind=kind, task=task, at=when, body=body)
                )
        except Exception:
            self._swallow(kind)

    @staticmethod
    def _body(message: Any, attempt: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message_id": message.message_id,
            "actor": message.actor_name,
            "queue": q_name(message.queue_name),
            "attempt": attempt,
            "pid": os.getpid(),
            "thread": threading.current_thread().name,
        }
        redelivered = getattr(message, "redelivered", None)
        if redelivered is not None:
            body["redelivered"] = bool(redelivered)
        return body

    def _swallow(self, what: str) -> None:
        self.errors += 1
        try:
            logger.warning("lifecycle middleware: %s failed", what, exc_info=True)
        except Exception:
            pass
