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

from lifecycle.client import config, link, messages
from lifecycle.client.context import current_attempt, current_task
from lifecycle.client.messages import BROKER_MARK
from lifecycle.client.publisher import Publisher, get_publisher

logger = logging.getLogger(__name__)

TaskKey = Callable[[Any], str]
# Stored on the MessageProxy at start, read by ack, fail and nack: the task's key as
# published and the events' body as its fields (message id, actor, queue, attempt, pid, the
# worker thread that ran it: ``_fields``), worked out once per message. The start and the
# ack share them, and nothing changes them.
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


_NO_ATTRIBUTES: dict[str, Any] = {}
_EMIT = Publisher.emit  # whose publisher is handed a start's and an ack's fields (``_note``)
# A worker thread's name, asked once (``_fields``). Fresh in a forked child.
_thread = threading.local()
_pid = os.getpid()
_queues: dict[Any, Any] = {}  # a queue's name as Dramatiq gives it -> as a body says it
MAX_QUEUES = 1000


def _forked() -> None:
    global _pid, _thread
    _pid = os.getpid()
    _thread = threading.local()


os.register_at_fork(after_in_child=_forked)


def _attributes(message: Any) -> dict[str, Any]:
    """The message's own attributes: a MessageProxy's hold the message it wraps
    (``_message``), RabbitMQ's ``redelivered`` and the marks of these hooks."""
    try:
        return cast(dict[str, Any], message.__dict__)
    except AttributeError:  # an object of __slots__: nothing of ours is on it
        return _NO_ATTRIBUTES


def _fields(inner: Any, own: dict[str, Any], attempt: int) -> messages.BrokerFields:
    """An event's body as its fields (``messages.BROKER_FIELDS``): message id, actor, queue,
    attempt, pid, the worker thread, whether RabbitMQ redelivered it. The start and ack of
    a message share them, and the publisher's side (a relay process, in a worker) makes
    their JSON: the worker's threads only read them."""
    try:
        thread = _thread.name
    except AttributeError:
        thread = _thread.name = threading.current_thread().name
    redelivered = own.get("redelivered")
    if redelivered is not None:
        redelivered = bool(redelivered)
    queue = inner.queue_name
    name = _queues.get(queue)
    if name is None:
        if len(_queues) >= MAX_QUEUES:
            _queues.clear()
        name = _queues[queue] = q_name(queue)
    return (
        BROKER_MARK,
        inner.message_id,
        inner.actor_name,
        name,
        attempt,
        _pid,
        thread,
        redelivered,
    )


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
        return self._key(_attributes(message).get("_message", message), message)

    @property
    def publisher(self) -> Publisher:
        return self._publisher or get_publisher()

    # -- hooks ------------------------------------------------------------------------------

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        # A worker process: with LIFECYCLE_RELAY=auto its publisher hands events to a relay
        # process (lifecycle.client.link), so that its threads pay an append per event;
        # started now, not by the first message.
        link.in_worker = True
        try:
            start = getattr(self.publisher, "start", None)
            if start is not None:
                start()
        except Exception:
            self._swallow("before_worker_boot")

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
        # The hooks on a worker's threads read the message behind Dramatiq's MessageProxy
        # (``_message``): each attribute read through the proxy's ``__getattr__`` costs more
        # than the rest of a hook, and a busy worker runs three hooks a message.
        try:
            try:
                own = message.__dict__
            except AttributeError:  # an object of __slots__ (``_attributes``)
                own = _NO_ATTRIBUTES
            inner = own.get("_message", message)
            attempt = (inner.options.get("retries") or 0) + 1
            key = self._key(inner, message)
            fields = _fields(inner, own, attempt)
            event = (config.task_key(key), fields)
            if own is _NO_ATTRIBUTES:
                setattr(message, _EVENT, event)
            else:
                own[_EVENT] = event  # what setattr does, without its lookups
            current_task.set(key)
            # What the attempt logs or reads carries its identity, whichever thread runs it
            # (an ``async def`` actor runs on the AsyncIO middleware's event-loop thread).
            current_attempt.set((str(fields[1]), attempt))
        except Exception:
            self._swallow("before_process_message")
            self._emit("start", message)
            return
        self._send("start", event)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        try:
            if exception is None:
                message.__dict__[_SUCCEEDED] = True  # reported once acked (after_ack)
            else:
                self._emit("fail", message, exception=repr(exception)[:2000])
        except Exception:  # an object of __slots__, or of its own making: counted, logged
            self._swallow("after_process_message")
        finally:  # whatever happened, the thread's next work is not this task's
            current_task.set(None)
            current_attempt.set(None)

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            own = message.__dict__
            if not own.get(_SUCCEEDED):
                return
            event = own.get(_EVENT)
        except AttributeError:  # an object of __slots__: nothing of ours is on it
            return
        except Exception:  # a message object of its own making
            self._swallow("after_ack")
            return
        if event is None:  # its start could not be worked out: the slow way, then
            self._emit("ack", message)
        else:
            self._send("ack", event)

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

    def _key(self, inner: Any, message: Any) -> str:
        """The message's task key: the default reads the message behind the proxy; a key
        function of the application's gets what Dramatiq gave the hook, as it always has."""
        task_key = self._task_key
        if task_key is None:
            task_key = self._task_key = _configured_task_key()
        return task_key(inner if task_key is default_task_key else message)

    def _send(self, kind: str, event: tuple[str, messages.BrokerFields]) -> None:
        """A start or an ack, worked out at the start: our publisher is given its fields as
        they are (``Publisher._note``: an append, made JSON by the relay or the publisher's
        thread); another publisher gets the body."""
        try:
            publisher = self._publisher or get_publisher()
            task, fields = event
            if getattr(type(publisher), "emit", None) is _EMIT:
                publisher._note(("broker", kind, task, None, time.time(), None, fields))
                return
            body = messages.broker_body(fields)
            if isinstance(publisher, Publisher):  # a subclass's own emit: what it always got
                publisher.emit("broker", kind, task, (body, messages.broker_json(fields)))
                return
            emit = getattr(publisher, "emit", None)
            if emit is not None:
                emit("broker", kind, task, body)
            else:  # a publisher of one's own, with ``publish`` only
                publisher.publish(
                    messages.make_message(source="broker", kind=kind, task=task, body=body)
                )
        except Exception:
            self._swallow(kind)

    def _emit(self, kind: str, message: Any, *, at: float | None = None, **extra: Any) -> None:
        try:
            own = _attributes(message)
            event = own.get(_EVENT)
            if event is None:  # not a message this worker started (enqueue, retry, skip)
                inner = own.get("_message", message)
                task = config.task_key(self._key(inner, message))
                fields = _fields(inner, own, (inner.options.get("retries") or 0) + 1)
            else:
                task, fields = event
            body = messages.broker_body(fields)
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

    def _swallow(self, what: str) -> None:
        self.errors += 1
        try:
            logger.warning("lifecycle middleware: %s failed", what, exc_info=True)
        except Exception:
            pass
