"""A process-wide publisher of event messages that never blocks, never raises, and loses
only what overflows its buffer, and says so.

``publish`` only encodes the message and appends it to a bounded buffer (at most
``LIFECYCLE_BUFFER_EVENTS`` messages and ``LIFECYCLE_BUFFER_BYTES`` bytes); a daemon
thread owns the pika connection (pika is not thread-safe) and sends to the topic exchange
``<namespace>.events`` with routing key ``"{source}.{kind}"``, in publisher-confirm mode:
a message leaves the buffer only once RabbitMQ has confirmed it. What has piled up goes as
one message of up to 500 events (a JSON array, routing key ``batch``), confirmed once:
so the thread keeps up with a busy worker, and a task's events keep their order. While
RabbitMQ is down the buffer holds what comes and the thread reconnects with backoff; once
it is back the buffer drains, in order.

What does not fit is dropped and counted per task and source, with the time span of the
dropped events. Once the connection is back and the buffer has drained, each of those
becomes a ``gap`` event of its task (README: Event schema), so the timeline says its
history may be incomplete instead of looking complete. Warnings are logged at most once
per ``LOG_EVERY`` seconds, because instrumentation must never break the observed system.

Before its first publish the thread declares the exchange and the ingest queue
(``lifecycle.client.topology``), so nothing is unroutable on a fresh RabbitMQ.

Dramatiq forks worker processes: a child gets a fresh buffer and thread on first use (a
thread does not survive ``fork``, and the parent's locks may have been copied held).
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pika

from lifecycle.client import config, messages, topology

logger = logging.getLogger(__name__)

LOG_EVERY = 30.0  # seconds between two warnings about the same trouble
IDLE_TICK = 1.0  # how often an idle thread services the connection (heartbeats)
MAX_GAPS = 1000  # tasks whose dropped events are told apart; beyond, only counted
MAX_REFUSALS = 3  # a message RabbitMQ refuses this many times in a row is dropped
REFUSED_PAUSE = 0.5  # seconds between two tries of a refused message
DEFAULT_BUFFER_EVENTS = 10_000
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
DEFAULT_SHUTDOWN_FLUSH = 30.0  # seconds a stopping process waits for its events' confirms
UNREACHABLE_GIVE_UP = 5.0  # seconds without RabbitMQ after which a stop stops waiting
NAMED_TASKS = 20  # task keys a log line about lost events names
# Several buffered events travel as one message (a JSON array: README, the event schema),
# confirmed once: what lets a worker's events keep up with the worker. Within the ingestor's
# limits (lifecycle.events: MAX_BATCH_EVENTS, MAX_BATCH_BYTES).
MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 1024 * 1024 - 1024
BATCH_ROUTING_KEY = "batch"


@dataclass(frozen=True)
class PublisherStats:
    published: int  # confirmed by RabbitMQ
    dropped: int  # refused by ``publish``: buffer full, or message not encodable
    failed: int  # sends that did not go through (each is retried: nothing is lost by them)
    queued: int  # waiting in the buffer now
    gaps: int = 0  # ``gap`` events sent, each telling a task how many of its events were lost


@dataclass
class _Gap:
    """Dropped events of one task and source: how many, and between which times."""

    count: int
    first_at: str
    last_at: str
    uuid: str | None = None  # set at the first try to send it: a resend is the same event


def _setting_int(name: str, default: int) -> int:
    raw = config.setting(name)
    if not raw:
        return default
    try:
        value = int(raw)
        if value < 1:
            raise ValueError
        return value
    except ValueError:
        logger.warning(
            "lifecycle publisher: %s=%r is not a positive integer; using %d", name, raw, default
        )
        return default


def process_name() -> str:
    """Who is publishing, for the timeline's "the worker dropped 12 events": the
    ``LIFECYCLE_PROCESS_ROLE`` if set, else the program's name (``dramatiq``, ``gunicorn``)."""
    role = os.environ.get("LIFECYCLE_PROCESS_ROLE")
    if role:
        return role
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    name = os.path.basename(argv0)
    if name in ("__main__.py", "-m", "-c"):
        name = os.path.basename(os.path.dirname(argv0)) or "python"
    return name.removesuffix(".py")[:64] or "python"


class Publisher:
    """Send event messages to the lifecycle exchange from any thread, without waiting."""

    def __init__(
        self,
        url: str | None = None,
        namespace: str | None = None,
        *,
        max_events: int | None = None,
        max_bytes: int | None = None,
        connect_timeout: float = 2.0,
        max_backoff: float = 10.0,
    ) -> None:
        self.url = url or config.amqp_url()
        self.namespace = namespace or config.namespace()
        self.exchange = config.exchange_name(self.namespace)
        self.max_events = max_events or _setting_int(
            "LIFECYCLE_BUFFER_EVENTS", DEFAULT_BUFFER_EVENTS
        )
        self.max_bytes = max_bytes or _setting_int("LIFECYCLE_BUFFER_BYTES", DEFAULT_BUFFER_BYTES)
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self._reset()
        ref = weakref.ref(self)

        def after_fork_in_child() -> None:
            publisher = ref()
            if publisher is not None:
                publisher._reset()

        os.register_at_fork(after_in_child=after_fork_in_child)

    def __repr__(self) -> str:
        return f"Publisher(url={config.redact_url(self.url)!r}, namespace={self.namespace!r})"

    def _reset(self) -> None:
        """Fresh state for this process: after ``__init__`` and in a forked child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the buffer, the stop flag
        self._buffer: collections.deque[tuple[str, bytes, str | None]] = collections.deque()
        self._bytes = 0
        self._busy = False  # the thread holds the head of the buffer, sending it
        self._idle = False  # the thread waits for something to send
        self._connected = False  # the thread has a channel to RabbitMQ
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._published = self._dropped = self._failed = self._gaps_sent = 0
        self._gaps: dict[tuple[str, str], _Gap] = {}
        self._unattributed = 0  # dropped events of no known task, or beyond MAX_GAPS tasks
        self._last_warning = float("-inf")
        self._suppressed = 0

    # -- any thread ---------------------------------------------------------------------

    def publish(self, message: dict[str, Any]) -> None:
        """Buffer one schema-1 message (``messages.make_message``); never raises or waits."""
        try:
            if self._pid != os.getpid():
                self._reset()  # forked without the at-fork hook (should not happen)
            routing_key = f"{message['source']}.{message['kind']}"
            body = messages.encode(message)
        except Exception as exc:
            self._drop(message, "cannot encode an event (%r): dropping it", exc)
            return
        try:
            with self._lock:
                full = (
                    len(self._buffer) >= self.max_events or self._bytes + len(body) > self.max_bytes
                )
                if not full:
                    self._buffer.append((routing_key, body, message.get("uuid")))
                    self._bytes += len(body)
                    if self._idle:  # only a thread waiting for work needs waking
                        self._idle = False
                        self._changed.notify_all()
            if full:
                self._drop(
                    message,
                    "the buffer is full (%d events, %d bytes): dropping events",
                    self.max_events,
                    self.max_bytes,
                )
                return
            if self._thread is None or not self._thread.is_alive():
                self._start_thread()
        except Exception as exc:  # never the caller's problem
            self._drop(message, "cannot buffer an event (%r): dropping it", exc)

    def flush(self, timeout: float = 5.0, *, unreachable: float | None = None) -> bool:
        """Wait until every buffered message was confirmed (and, while connected, every gap
        told); False on timeout. ``unreachable``: also stop waiting once RabbitMQ has been
        out of reach that many seconds in a row (a stopping process need not wait out its
        whole allowance for a broker that is down)."""
        now = time.monotonic()
        deadline, away_since = now + timeout, None if self._connected else now
        with self._lock:
            while self._buffer or self._busy or (self._gaps and self._connected):
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                if self._connected:
                    away_since = None
                elif away_since is None:
                    away_since = now
                elif unreachable is not None and now - away_since >= unreachable:
                    return False
                self._changed.wait(min(remaining, 0.25))
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout`` seconds, default ``LIFECYCLE_SHUTDOWN_FLUSH``, and no
        longer than ``UNREACHABLE_GIVE_UP`` seconds while RabbitMQ is out of reach), then
        close the connection and end the thread; False if events were left, which a log line
        then counts, with why and which tasks they were about."""
        if timeout is None:
            timeout = shutdown_flush()
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            return not self._buffer
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout, unreachable=UNREACHABLE_GIVE_UP)
        with self._lock:
            self._stopping = True
            connected = self._connected
            left = list(self._buffer)
            self._changed.notify_all()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        if left:
            why = (
                f"RabbitMQ had not confirmed them after {timeout:g}s (LIFECYCLE_SHUTDOWN_FLUSH)"
                if connected
                else f"RabbitMQ out of reach for {UNREACHABLE_GIVE_UP:g}s"
            )
            tasks = _tasks_of(body for _, body, _ in left)
            named = ", ".join(tasks[:NAMED_TASKS]) + (
                f" and {len(tasks) - NAMED_TASKS} more" if len(tasks) > NAMED_TASKS else ""
            )
            self._warn_now("stopping with %d events not sent: %s; tasks %s", len(left), why, named)
        return flushed and not self._thread.is_alive()

    def stats(self) -> PublisherStats:
        return PublisherStats(
            self._published, self._dropped, self._failed, len(self._buffer), self._gaps_sent
        )

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="lifecycle-publisher", daemon=True
                )
                self._thread.start()

    def _drop(self, message: Any, reason: str, *args: object) -> None:
        """Count a lost message against its task and source (for its ``gap`` event)."""
        try:
            task, source = str(message["task"]), str(message["source"])
            at = str(message.get("at") or messages.now().isoformat())
        except Exception:
            task = source = at = ""
        with self._lock:
            self._dropped += 1
            gap = self._gaps.get((task, source)) if task else None
            if gap is not None:
                gap.count += 1
                gap.first_at, gap.last_at = min(gap.first_at, at), max(gap.last_at, at)
                gap.uuid = None  # it counts more now: a new event, not a resend
            elif task and len(self._gaps) < MAX_GAPS:
                self._gaps[(task, source)] = _Gap(1, at, at)
            else:
                self._unattributed += 1
        self._warn(reason, *args)

    def _warn(self, reason: str, *args: object) -> None:
        """Log a problem at most once per LOG_EVERY seconds, with the counts so far."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_warning < LOG_EVERY:
                self._suppressed += 1
                return
            self._last_warning, suppressed, self._suppressed = now, self._suppressed, 0
        self._warn_now(reason + " (%d similar warnings suppressed)", *args, suppressed)

    def _warn_now(self, reason: str, *args: object) -> None:
        try:
            logger.warning(
                "lifecycle publisher: " + reason + "; published %d, dropped %d, buffered %d",
                *args,
                self._published,
                self._dropped,
                len(self._buffer),
            )
        except Exception:  # a broken logging setup must not break the caller
            pass

    # -- the publisher thread -------------------------------------------------------------

    def _run(self) -> None:
        sender = _Sender(self)
        refusals = 0  # consecutive refusals of the message at the head of the buffer
        limit = MAX_BATCH_EVENTS  # halved after a refused batch, to find the event refused
        try:
            while True:
                with self._lock:
                    while not self._buffer and not self._stopping:
                        if self._gaps and sender.channel is not None:
                            break  # connected, drained: time to tell what was lost
                        self._idle = True
                        woken = self._changed.wait(IDLE_TICK)
                        self._idle = False
                        if not woken:
                            break
                    stopping = self._stopping
                    items = _head(self._buffer, limit) if self._buffer and not stopping else []
                    self._busy = bool(items)
                item = _batch(items) if items else None
                if stopping:
                    if self._gaps and sender.channel is not None:
                        self._send_gaps(sender)  # what was lost is told before leaving
                    return
                if item is None:
                    if self._gaps and (sender.channel is not None or sender.connect()):
                        self._send_gaps(sender)
                    else:
                        sender.idle()
                    continue
                try:
                    outcome = sender.send(*item)
                except Exception as exc:  # the thread must outlive any one message
                    self._warn("cannot send an event (%r)", exc)
                    outcome = REFUSED
                if outcome == REFUSED and len(items) > 1:
                    limit = max(1, len(items) // 2)  # one of them is refused: find it
                else:
                    limit = MAX_BATCH_EVENTS if outcome == SENT else limit
                    refusals = refusals + 1 if outcome == REFUSED else 0
                poison = refusals >= MAX_REFUSALS
                with self._lock:
                    self._busy = False
                    if outcome == SENT or poison:
                        for _ in items:
                            self._bytes -= len(self._buffer.popleft()[1])
                    if outcome == SENT:
                        self._published += len(items)
                    else:
                        self._failed += len(items)
                    self._changed.notify_all()
                if poison:  # RabbitMQ keeps refusing this one: it must not hold up the rest
                    refusals = 0
                    self._drop(
                        _about(item[1]),
                        "RabbitMQ refused an event %d times: dropping it",
                        MAX_REFUSALS,
                    )
                elif outcome == DOWN:
                    self._wait_for(sender.next_connect)
                elif outcome == REFUSED:
                    self._wait_for(time.monotonic() + REFUSED_PAUSE)
        finally:
            with self._lock:
                self._busy = False
                self._changed.notify_all()
            sender.close()

    def _wait_for(self, when: float) -> None:
        """Sleep until ``when`` (the next connection attempt), waking early to stop."""
        with self._lock:
            while not self._stopping and (remaining := when - time.monotonic()) > 0:
                self._changed.wait(min(remaining, IDLE_TICK))

    def _send_gaps(self, sender: _Sender) -> None:
        """Send a ``gap`` event per task and source that lost events, once they can go."""
        with self._lock:
            gaps, self._gaps = self._gaps, {}
            unattributed, self._unattributed = self._unattributed, 0
        if unattributed:
            self._warn_now("%d dropped events belonged to no task that could be told", unattributed)
        name, pid = process_name(), os.getpid()
        for n, ((task, source), gap) in enumerate(gaps.items()):
            gap.uuid = gap.uuid or str(uuid.uuid4())
            message = messages.make_message(
                source=source or "log",
                kind="gap",
                task=task,
                at=_parse_time(gap.first_at),
                body={
                    "dropped": gap.count,
                    "first_at": gap.first_at,
                    "last_at": gap.last_at,
                    "process": name,
                    "pid": pid,
                    "reason": "the publisher's buffer was full",
                },
            )
            message["uuid"] = gap.uuid
            try:
                sent = sender.send(
                    f"{message['source']}.gap", messages.encode(message), message["uuid"]
                )
            except Exception:
                sent = REFUSED
            if sent != SENT:  # keep the rest (and this one) for the next connection
                with self._lock:
                    for key, rest in list(gaps.items())[n:]:
                        kept = self._gaps.get(key)
                        if kept is None and len(self._gaps) >= MAX_GAPS:
                            self._unattributed += rest.count
                        elif kept is None:
                            self._gaps[key] = rest  # as it was, uuid included
                        else:
                            kept.count += rest.count
                            kept.first_at = min(kept.first_at, rest.first_at)
                            kept.last_at = max(kept.last_at, rest.last_at)
                            kept.uuid = None
                return
            self._gaps_sent += 1
        with self._lock:
            self._changed.notify_all()  # a flush may be waiting for the gaps


def _head(
    buffer: collections.deque[tuple[str, bytes, str | None]], limit: int
) -> list[tuple[str, bytes, str | None]]:
    """The oldest buffered events that fit in one message: at most ``limit`` events and
    MAX_BATCH_BYTES bytes (always the first one, whatever its size)."""
    items: list[tuple[str, bytes, str | None]] = []
    size = 2
    for item in itertools.islice(buffer, limit):
        size += len(item[1]) + 1
        if items and size > MAX_BATCH_BYTES:
            break
        items.append(item)
    return items


def _batch(items: list[tuple[str, bytes, str | None]]) -> tuple[str, bytes, str | None]:
    """One message for these events: the event itself, or a JSON array of them (routing
    key ``batch``), in their order."""
    if len(items) == 1:
        return items[0]
    return BATCH_ROUTING_KEY, b"[" + b",".join(body for _, body, _ in items) + b"]", None


def shutdown_flush() -> float:
    """``LIFECYCLE_SHUTDOWN_FLUSH``: the seconds a stopping process waits for its events."""
    try:
        value = float(config.setting("LIFECYCLE_SHUTDOWN_FLUSH") or DEFAULT_SHUTDOWN_FLUSH)
    except ValueError:
        return DEFAULT_SHUTDOWN_FLUSH
    return min(max(value, 0.0), 3600.0) if value == value else DEFAULT_SHUTDOWN_FLUSH


def _tasks_of(bodies: Any) -> list[str]:
    """The distinct task keys of buffered messages, in order (one that cannot be read is
    skipped): a stopping process names the tasks whose events it could not send."""
    seen: dict[str, None] = {}
    for body in bodies:
        task = _about(body).get("task")
        if isinstance(task, str):
            seen.setdefault(task[:200], None)
    return list(seen)


def _about(body: bytes) -> dict[str, Any]:
    """The task, source and time of an encoded message, for counting it as dropped."""
    try:
        found = json.loads(body)
        return found if isinstance(found, dict) else {}
    except ValueError:
        return {}


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


SENT, DOWN, REFUSED = "sent", "down", "refused"


class _Sender:
    """The pika connection of the publisher thread, with reconnect and backoff."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.connection: pika.BlockingConnection | None = None
        self.channel: Any = None
        self.next_connect = 0.0
        self.backoff = 0.0

    def send(self, routing_key: str, body: bytes, message_id: str | None) -> str:
        """Publish one message and wait for RabbitMQ's confirm: SENT, DOWN (no connection)
        or REFUSED (connected, but the publish failed twice)."""
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
        )
        for _ in range(2):  # a dropped connection is retried once, at once
            if self.channel is None and not self.connect():
                return DOWN
            try:
                self.channel.basic_publish(
                    self.publisher.exchange, routing_key, body, properties, mandatory=True
                )
                return SENT
            except pika.exceptions.ConnectionBlockedTimeout:
                # RabbitMQ blocks publishers (a memory or disk alarm): it is down for us.
                self.publisher._warn("RabbitMQ blocks publishing (an alarm); buffering events")
                self.disconnect()
                self.next_connect = time.monotonic() + self.publisher.max_backoff
                return DOWN
            except pika.exceptions.UnroutableError:
                # Someone deleted the ingest queue: declare it again, then retry.
                self.publisher._warn("an event was unroutable; declaring the ingest queue again")
                self.disconnect()
            except Exception as exc:
                self.publisher._warn("publish failed (%r), reconnecting", exc)
                self.disconnect()
        return REFUSED

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
            try:
                topology.declare(self.channel, self.publisher.namespace)
            except pika.exceptions.ChannelClosedByBroker as exc:
                # The queue exists with other arguments, or this user may not declare: the
                # ingestor's own declaration stands, and events go to the exchange anyway.
                self.publisher._warn("cannot declare the ingest queue (%s); publishing", exc)
                self.channel = self.connection.channel()
            self.channel.confirm_delivery()
        except Exception as exc:
            self.disconnect()
            self.backoff = min(max(0.5, self.backoff * 2), self.publisher.max_backoff)
            self.next_connect = time.monotonic() + self.backoff
            self.publisher._warn(
                "RabbitMQ unreachable (%r), buffering events; next try in %.1fs",
                exc,
                self.backoff,
            )
            return False
        self.backoff = 0.0
        self.publisher._connected = True
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
        self.publisher._connected = False
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
                atexit.register(_publisher.close)
    return _publisher
