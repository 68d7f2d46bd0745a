"""A process-wide publisher of event messages that never blocks and never raises.

``publish`` only encodes the message and puts it on a bounded in-memory queue; a daemon
thread owns the pika connection (pika is not thread-safe) and sends to the topic exchange
``<namespace>.events`` (``lifecycle.client.config``) with routing key
``"{source}.{kind}"``. When the queue is full the message is dropped; when RabbitMQ is
down the thread drops what it takes off the queue until a reconnect (with backoff)
succeeds. Both are counted, and logged at most once per ``LOG_EVERY`` seconds, because
instrumentation must never break the observed system.

Dramatiq forks worker processes: a child gets a fresh queue and thread on first use (a
thread does not survive ``fork``, and the parent's locks may have been copied held).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import pika

from lifecycle.client import config, messages

logger = logging.getLogger(__name__)

LOG_EVERY = 30.0  # seconds between two warnings about the same trouble
IDLE_TICK = 1.0  # how often an idle thread services the connection (heartbeats)
_STOP = ("", b"", None)  # sentinel item: close the connection and end the thread


@dataclass(frozen=True)
class PublisherStats:
    published: int  # handed to RabbitMQ
    dropped: int  # refused by ``publish``: queue full or message not encodable
    failed: int  # taken off the queue but not sent: RabbitMQ unreachable or publish error
    queued: int  # waiting in the queue now


class Publisher:
    """Send event messages to the lifecycle exchange from any thread, without waiting."""

    def __init__(
        self,
        url: str | None = None,
        exchange: str | None = None,
        *,
        maxsize: int = 10_000,
        connect_timeout: float = 2.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.url = url or config.amqp_url()
        self.exchange = exchange or config.exchange_name()
        self.maxsize = maxsize
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self._reset()
        ref = weakref.ref(self)

        def after_fork_in_child() -> None:
            publisher = ref()
            if publisher is not None:
                publisher._reset()

        os.register_at_fork(after_in_child=after_fork_in_child)

    def _reset(self) -> None:
        """Fresh state for this process: after ``__init__`` and in a forked child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, bytes, str | None]] = queue.Queue(self.maxsize)
        self._thread: threading.Thread | None = None
        self._published = self._dropped = self._failed = 0
        self._last_warning = float("-inf")
        self._suppressed = 0

    # -- any thread ---------------------------------------------------------------------

    def publish(self, message: dict[str, Any]) -> None:
        """Queue one schema-1 message (``messages.make_message``); never raises or waits."""
        try:
            if self._pid != os.getpid():
                self._reset()  # forked without the at-fork hook (should not happen)
            routing_key = f"{message['source']}.{message['kind']}"
            item = (routing_key, messages.encode(message), message.get("uuid"))
            if self._thread is None or not self._thread.is_alive():
                self._start_thread()
            self._queue.put_nowait(item)
        except queue.Full:
            self._count_dropped("event queue is full (%d): dropping events", self.maxsize)
        except Exception as exc:
            self._count_dropped("cannot queue an event (%r): dropping it", exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued message was sent or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        q = self._queue
        with q.all_tasks_done:
            while q.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                q.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float = 2.0) -> bool:
        """Flush, then close the connection and end the thread; False if it took too long."""
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            return True
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        try:
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            return False
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return flushed and not self._thread.is_alive()

    def stats(self) -> PublisherStats:
        return PublisherStats(self._published, self._dropped, self._failed, self._queue.qsize())

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="lifecycle-publisher", daemon=True
                )
                self._thread.start()

    def _count_dropped(self, reason: str, *args: object) -> None:
        with self._lock:
            self._dropped += 1
        self._warn(reason, *args)

    def _warn(self, reason: str, *args: object) -> None:
        """Log a problem at most once per LOG_EVERY seconds, with the counts so far."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_warning < LOG_EVERY:
                self._suppressed += 1
                return
            self._last_warning, suppressed, self._suppressed = now, self._suppressed, 0
        try:
            logger.warning(
                "lifecycle publisher: " + reason + " (published %d, dropped %d, failed %d; "
                "%d similar warnings suppressed)",
                *args,
                self._published,
                self._dropped,
                self._failed,
                suppressed,
            )
        except Exception:  # a broken logging setup must not break the caller
            pass

    # -- the publisher thread -------------------------------------------------------------

    def _run(self, q: queue.Queue[tuple[str, bytes, str | None]]) -> None:
        sender = _Sender(self)
        try:
            while True:
                try:
                    item = q.get(timeout=IDLE_TICK)
                except queue.Empty:
                    sender.idle()
                    continue
                if item is _STOP:
                    q.task_done()
                    return
                try:
                    sent = sender.send(*item)
                except Exception as exc:  # the thread must outlive any one message
                    self._warn("cannot send an event (%r)", exc)
                    sent = False
                # Only this thread writes these two counters.
                if sent:
                    self._published += 1
                else:
                    self._failed += 1
                q.task_done()
        finally:
            sender.close()


class _Sender:
    """The pika connection of the publisher thread, with reconnect and backoff."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.connection: pika.BlockingConnection | None = None
        self.channel: Any = None
        self.next_connect = 0.0
        self.backoff = 0.0

    def send(self, routing_key: str, body: bytes, message_id: str | None) -> bool:
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
        )
        for _ in range(2):  # a dropped connection is retried once, at once
            if self.channel is None and not self.connect():
                return False
            try:
                self.channel.basic_publish(self.publisher.exchange, routing_key, body, properties)
                return True
            except Exception as exc:
                self.publisher._warn("publish failed (%r), reconnecting", exc)
                self.disconnect()
        return False

    def connect(self) -> bool:
        if time.monotonic() < self.next_connect:
            return False
        try:
            params = pika.URLParameters(self.publisher.url)
            params.socket_timeout = self.publisher.connect_timeout
            params.stack_timeout = self.publisher.connect_timeout + 1
            params.blocked_connection_timeout = self.publisher.connect_timeout
            params.connection_attempts = 1
            self.connection = pika.BlockingConnection(params)
            self.channel = self.connection.channel()
            self.channel.exchange_declare(self.publisher.exchange, "topic", durable=True)
        except Exception as exc:
            self.disconnect()
            self.backoff = min(max(0.5, self.backoff * 2), self.publisher.max_backoff)
            self.next_connect = time.monotonic() + self.backoff
            self.publisher._warn(
                "RabbitMQ unreachable (%r), dropping events; next try in %.1fs", exc, self.backoff
            )
            return False
        self.backoff = 0.0
        return True

    def idle(self) -> None:
        if self.connection is None:
            return
        try:
            self.connection.process_data_events(0)
        except Exception as exc:
            self.publisher._warn("connection lost while idle (%r)", exc)
            self.disconnect()

    def disconnect(self) -> None:
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:
                pass

    close = disconnect


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def current() -> Publisher | None:
    """The process's publisher if it was ever made (None: nothing was published)."""
    return _publisher


def get_publisher() -> Publisher:
    """The process's publisher, created on first use (``lifecycle.client.config``)."""
    global _publisher
    if _publisher is None:
        with _publisher_lock:
            if _publisher is None:
                _publisher = Publisher()
                atexit.register(_publisher.close, 2.0)
    return _publisher
