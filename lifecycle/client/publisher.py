"""A process-wide publisher of event messages that never blocks, never raises, and loses
only what overflows its buffer, and says so.

``publish`` only encodes the message and appends it to a bounded buffer (at most
``LIFECYCLE_BUFFER_EVENTS`` events and ``LIFECYCLE_BUFFER_BYTES`` bytes, counting those
sent but not yet confirmed); a daemon thread owns the pika connection (pika is not
thread-safe) and its event loop (a ``SelectConnection``). It sends to the topic exchange
``<namespace>.events`` in publisher-confirm mode, with confirms pipelined: up to ``WINDOW``
messages unconfirmed, each ack or nack (``multiple`` included) matched to its message. An
event leaves the buffer only once RabbitMQ has confirmed it:

- what has piled up goes as one message of up to 500 events (a JSON array, routing key
  ``batch``); one event alone keeps its routing key ``"{source}.{kind}"``;
- the thread waits up to ``LIFECYCLE_PUBLISH_LINGER`` seconds (0.02) after the first event
  it finds before sending, so that a busy process sends a few large messages rather than
  many small ones (each message costs RabbitMQ and the process far more than its events);
  500 events waiting, a ``flush`` or a caller waiting for a confirm (``wait``) send at once;
- a nacked or returned (unroutable) message is sent again (a returned one after the ingest
  queue is declared again), after a pause; after a reconnect, whatever was unconfirmed is
  sent again. Delivery is at least once: the store deduplicates by uuid.
- a task's events are sent in the order they were published; only a message RabbitMQ
  nacked or returned can be sent again after later ones.

While RabbitMQ is down the buffer holds what comes and the thread reconnects with backoff;
once it is back the buffer drains, in order. What does not fit (or cannot be encoded) is
dropped and counted per task and source, with the time span of the dropped events and why
they were dropped. Once the connection is back and the buffer has drained, each of those
becomes a ``gap`` event of its task (README: Event schema), so the timeline says its
history may be incomplete instead of looking complete.
Warnings are logged at most once per ``LOG_EVERY`` seconds, because instrumentation must
never break the observed system.

Before its first publish the thread declares the exchange and the ingest queue
(``lifecycle.client.topology``), so nothing is unroutable on a fresh RabbitMQ.

Dramatiq forks worker processes: a child gets a fresh buffer and thread on first use (a
thread does not survive ``fork``, and the parent's locks may have been copied held).
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import json
import logging
import marshal
import math
import operator
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika
from pika.adapters.select_connection import IOLoop

from lifecycle.client import config, messages, topology
from lifecycle.client.link import Link
from lifecycle.client.link import wanted as relay_wanted

logger = logging.getLogger(__name__)

LOG_EVERY = 30.0  # seconds between two warnings about the same trouble
MAX_GAPS = 1000  # tasks whose dropped events are told apart; beyond, only counted
MAX_GAP_REASON = 200  # characters of a gap's reason: the distinct causes of its drops
REFUSED_PAUSE = 0.5  # seconds before a nacked or returned message is sent again (doubling)
DEFAULT_BUFFER_EVENTS = 10_000
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
DEFAULT_LINGER = 0.02  # seconds the thread lets events gather before it sends them
DEFAULT_SHUTDOWN_FLUSH = 30.0  # seconds a stopping process waits for its events' confirms
UNREACHABLE_GIVE_UP = 5.0  # seconds without RabbitMQ after which a stop stops waiting
NAMED_TASKS = 20  # task keys a log line about lost events names
WINDOW = 32  # messages sent and not yet confirmed
# Several buffered events travel as one message (a JSON array: README, the event schema),
# confirmed once: what lets a worker's events keep up with the worker. Within the ingestor's
# limits (lifecycle.events: MAX_BATCH_EVENTS, MAX_BATCH_BYTES).
MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 1024 * 1024 - 1024
BATCH_ROUTING_KEY = "batch"

# An event as the caller left it: its ticket (publish order), and the message, built
# (``publish``) or as its parts (``emit``): source, kind, task, status, at, txid, body.
Entry = tuple[int, Any]
# An event encoded by the thread: routing key, the message's JSON, its uuid, its ticket.
Item = tuple[str, bytes, str | None, int]


@dataclass(frozen=True)
class PublisherStats:
    published: int  # confirmed by RabbitMQ
    dropped: int  # refused by ``publish``: buffer full, or message not encodable
    failed: int  # events of messages nacked, returned or unconfirmed at a disconnect (each
    # is sent again: nothing is lost by them)
    queued: int  # held now: buffered, or sent and not yet confirmed
    gaps: int = 0  # ``gap`` events sent, each telling a task how many of its events were lost


@dataclass
class _Gap:
    """Dropped events of one task and source: how many, between which times, and why."""

    count: int
    first_at: str
    last_at: str
    reasons: list[str] = field(default_factory=list)  # distinct, first come first
    uuid: str | None = None  # set at the first try to send it: a resend is the same event

    def add_reason(self, cause: str) -> None:
        """Tell ``cause`` too, unless it is told already or the reason is long enough."""
        cause = cause[: MAX_GAP_REASON + 1]  # an exception's text can be long: kept bounded
        if cause not in self.reasons and len(self.reason()) < MAX_GAP_REASON:
            self.reasons.append(cause)

    def reason(self) -> str:
        """Why its events were dropped: the distinct causes, at most MAX_GAP_REASON chars."""
        text = "; ".join(self.reasons) or "unknown"
        return text if len(text) <= MAX_GAP_REASON else text[: MAX_GAP_REASON - 1] + "…"


@dataclass
class _Flight:
    """One message sent and not yet confirmed: its events, or the gaps it tells."""

    items: list[Item] = field(default_factory=list)
    gaps: list[tuple[tuple[str, str], _Gap]] = field(default_factory=list)
    size: int = 0  # bytes of its events, as the buffer counted them
    returned: bool = False  # RabbitMQ returned it (unroutable): its ack does not count


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


def _setting_seconds(name: str, default: float, highest: float) -> float:
    raw = config.setting(name)
    if not raw:
        return default
    try:
        value = float(raw)
        if not 0 <= value <= highest:  # NaN too
            raise ValueError
        return value
    except ValueError:
        logger.warning(
            "lifecycle publisher: %s=%r is not a number of seconds from 0 to %g; using %g",
            name,
            raw,
            highest,
            default,
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


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """A callback of the thread's event loop: its failure is logged, never raised into pika."""

    @functools.wraps(method)
    def call(self: Publisher, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:
            self._warn("the publisher thread's %s failed (%r)", method.__name__, exc)

    return call


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
        linger: float | None = None,
        relay: bool | None = None,
    ) -> None:
        self.url = url or config.amqp_url()
        self.namespace = namespace or config.namespace()
        self.exchange = config.exchange_name(self.namespace)
        self.max_events = max_events or _setting_int(
            "LIFECYCLE_BUFFER_EVENTS", DEFAULT_BUFFER_EVENTS
        )
        self.max_bytes = max_bytes or _setting_int("LIFECYCLE_BUFFER_BYTES", DEFAULT_BUFFER_BYTES)
        if linger is not None and not 0 <= linger <= 10.0:  # NaN too
            logger.warning("lifecycle publisher: linger=%r is not 0 to 10 seconds", linger)
            linger = None
        self.linger = (
            linger
            if linger is not None
            else _setting_seconds("LIFECYCLE_PUBLISH_LINGER", DEFAULT_LINGER, 10.0)
        )
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        # Hand events to a relay process (``lifecycle.client.relay``): True, False, or None
        # for ``LIFECYCLE_RELAY`` (``auto``: in a Dramatiq worker process).
        self.relay = relay
        # A relay's own publisher: the uuids of the events it was handed (the handing
        # process's prefix and the event's ticket), and the pid its ``gap`` events name.
        self._uuid_head: str | None = None
        self._reported_pid: int | None = None
        self._link: Link | None = None  # (``_reset`` sets it again)
        self._reset()
        ref = weakref.ref(self)

        def after_fork_in_child() -> None:
            publisher = ref()
            if publisher is not None:
                if publisher._link is not None:
                    publisher._link.forget()
                publisher._uuid_head = None  # its tickets start again: not the parent's uuids
                publisher._reset()

        os.register_at_fork(after_in_child=after_fork_in_child)

    def __repr__(self) -> str:
        return f"Publisher(url={config.redact_url(self.url)!r}, namespace={self.namespace!r})"

    def _reset(self) -> None:
        """Fresh state for this process: after ``__init__`` and in a forked child."""
        self._pid = os.getpid()
        # Shared between the callers and the thread, under the lock:
        self._lock = threading.RLock()  # a signal handler may publish mid-publish
        self._changed = threading.Condition(self._lock)  # confirms, connection, stop
        self._buffer: collections.deque[Entry] = collections.deque()  # not yet taken
        # Events noted without the lock (``_note``), in order, not yet given a ticket: each
        # is moved to the buffer (``_absorb``) before anything later is, or anything reads it.
        self._lane: collections.deque[Any] = collections.deque()
        self._unwarned = 0  # events ``_absorb`` dropped and no warning told yet
        self._held = 0  # events buffered, taken, or sent and not yet confirmed
        self._bytes = 0  # the encoded size of those taken (the thread encodes them)
        self._tickets = itertools.count(1)
        self._last_ticket = 0
        # The thread sleeps until woken (or has not started, or has ended): the next publish
        # wakes it (or starts one).
        self._idle = True
        self._running = False  # a thread was started and has not done the last of ``_run``
        self._urgent = 0  # tickets up to this one are awaited: send them without lingering
        self._waiters = 0  # callers in ``wait`` or ``flush``
        self._confirmed = 0  # every ticket up to this one is confirmed (kept while awaited)
        self._lost: collections.deque[int] = collections.deque(maxlen=4096)  # dropped tickets
        self._connected = False  # the thread has a channel to RabbitMQ
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: IOLoop | None = None
        self._link = None  # set as the thread first starts, if it hands events to a relay
        self._stop_by = 0.0  # when ``close`` stops waiting for the thread (and the relay)
        self._published = self._dropped = self._failed = self._gaps_sent = 0
        self._gaps: dict[tuple[str, str], _Gap] = {}
        self._unattributed = 0  # dropped events of no known task, or beyond MAX_GAPS tasks
        self._last_warning = float("-inf")
        self._suppressed = 0
        # The thread's own (and the caller of ``close`` once it has ended):
        self._pending: collections.deque[Item] = collections.deque()  # taken, not yet sent
        self._pending_since = 0.0
        self._bodies: dict[int, tuple[Any, str]] = {}  # the last round's encoded bodies
        self._inflight: collections.OrderedDict[int, _Flight] = collections.OrderedDict()
        self._connection: Any = None
        self._channel: Any = None
        self._ready = False  # the channel is in confirm mode and the topology declared
        self._tag = 0  # the channel's last delivery tag
        self._timer: Any = None
        self._reconnect: Any = None
        self._backoff = 0.0
        self._paused_until = 0.0  # after a nack or a return
        self._pause = 0.0
        self._declare_failed = False  # this connection may not declare the ingest queue

    # -- any thread ---------------------------------------------------------------------

    def publish(self, message: dict[str, Any]) -> int | None:
        """Buffer one schema-1 message (``messages.make_message``); never raises or waits.
        The publisher thread encodes it: the message is the publisher's from now on (do not
        change it). Returns its ticket, for ``wait``; None if it was dropped."""
        return self._append(message)

    def emit(
        self,
        source: str,
        kind: str,
        task: str,
        body: dict[str, Any] | tuple[dict[str, Any], str],
        *,
        at: float | None = None,
        status: str | None = None,
        txid: int | None = None,
    ) -> int | None:
        """``publish(make_message(...))`` at the least cost to the calling thread: the
        message, its uuid and its time (``at``: seconds since the epoch, default now) are
        made by the publisher thread. ``body`` is the publisher's from now on (an event may
        share one with another): a dict, or a dict and its JSON text, byte for byte what
        ``json.dumps(body, separators=(",", ":"))`` makes. Returns its ticket, for
        ``wait``; None if it was dropped. (The Dramatiq middleware's start and ack cost its
        threads less still: ``_note``.)"""
        return self._append(
            (source, kind, task, status, time.time() if at is None else at, txid, body)
        )

    def _note(self, message: Any) -> None:
        """``emit``'s parts buffered at the least cost to the caller, without a ticket (the
        Dramatiq middleware's start and ack): an append, atomic under the GIL. The thread
        (or the next ``_append``, ``flush``, ``close``) gives it its ticket, in order, and
        applies the buffer's bound then. The thread is woken if it sleeps, or once a whole
        message waits; it sets ``_idle`` before it looks at the lane a last time, so an
        event appended as it goes to sleep is either seen by it or wakes it."""
        lane = self._lane
        lane.append(message)
        if self._idle or len(lane) >= MAX_BATCH_EVENTS:
            self._absorb_and_wake()

    def _absorb_and_wake(self) -> None:
        try:
            with self._lock:
                before = len(self._buffer)
                self._absorb()
                full = before < MAX_BATCH_EVENTS <= len(self._buffer)
                idle, self._idle = self._idle, False
            self._warn_dropped()
            self._start_or_wake(wake=idle or full)
        except Exception as exc:  # never the caller's problem: kept, the next one tries
            self._warn("cannot buffer noted events (%r); keeping them", exc)

    def _absorb(self) -> None:
        """Under the lock: the lane's events into the buffer, each given its ticket; what
        exceeds ``max_events`` is dropped and counted, as ``_append`` would have. Nothing
        is logged here (a logging handler's lock must never be awaited under ours): the
        caller calls ``_warn_dropped`` once it has let the lock go."""
        lane = self._lane
        count = len(lane)
        if not count:
            return
        taken = list(itertools.islice(iter(lane.popleft, None), count))
        room = max(self.max_events - self._held, 0)
        dropped = taken[room:] if room < count else None
        if dropped:
            del taken[room:]
        if taken:
            # Each ticket drawn from the counter itself, all of them in one C call: a signal
            # handler or a finalizer that publishes meanwhile (the lock is reentrant) draws
            # tickets of its own from the same counter, never these.
            entries = list(zip(itertools.islice(self._tickets, len(taken)), taken, strict=True))
            self._buffer.extend(entries)
            self._held += len(entries)
            self._last_ticket = max(self._last_ticket, entries[-1][0])
        if dropped:
            cause = f"the publisher's buffer was full ({self.max_events} events)"
            for message in dropped:
                self._count_drop(_summary(message), cause)
            self._unwarned += len(dropped)

    def _warn_dropped(self) -> None:
        """Log the events ``_absorb`` dropped, outside the lock."""
        if self._unwarned:
            with self._lock:
                count, self._unwarned = self._unwarned, 0
            if count:
                self._warn("the buffer is full (%d events): dropping events", self.max_events)

    def _append(self, message: Any) -> int | None:
        # The caller's whole cost: a lock, a ticket, an append. A forked child got a fresh
        # state from the at-fork hook (``_reset``); the thread's liveness is asked only when
        # it sleeps (``_idle``, also set as it ends), not at each event.
        try:
            wake = False
            with self._lock:
                buffer = self._buffer
                before = len(buffer)
                if self._lane:
                    self._absorb()  # noted before this one: their tickets come first
                if self._held < self.max_events:
                    ticket = self._last_ticket = next(self._tickets)
                    buffer.append((ticket, message))
                    self._held += 1
                    # Wake the thread only if it sleeps, or once a full message waits.
                    wake = self._idle or before < MAX_BATCH_EVENTS <= len(buffer)
                    if wake:
                        self._idle = False
                else:
                    ticket = None
            if self._unwarned:
                self._warn_dropped()
            if ticket is not None and not wake:
                return ticket
            if ticket is None:
                self._drop(
                    _summary(message),
                    f"the publisher's buffer was full ({self.max_events} events)",
                    "the buffer is full (%d events): dropping events",
                    self.max_events,
                )
                return None
            self._start_or_wake()  # a thread that cannot start: the next publish tries again
            return ticket
        except Exception as exc:  # never the caller's problem
            self._drop(
                _summary(message),
                f"the publisher could not buffer the event ({exc!r})",
                "cannot buffer an event (%r): dropping it",
                exc,
            )
            return None

    def _append_handed(self, entries: list[Entry], urgent: int) -> None:
        """A relay's publisher: buffer the events its handing process sent, with their own
        tickets (always rising), past any bound (the handing process bounds them); no
        entries: events handed already are awaited (``urgent``), sent without the linger."""
        if not entries:
            with self._lock:
                sooner, self._urgent = urgent > self._urgent, max(self._urgent, urgent)
            if sooner and self._running:
                self._wake()
            return
        with self._lock:
            self._buffer.extend(entries)
            self._held += len(entries)
            self._last_ticket = entries[-1][0]
            self._urgent = max(self._urgent, urgent)
            idle, self._idle = self._idle, False
        self._start_or_wake(wake=idle or bool(urgent))

    def _told_gaps(self, told: list[Any], start: bool = True) -> None:
        """Dropped events told as ``(task, source, count, first_at, last_at, reasons)``, for
        ``gap`` events: a relay's publisher, from its handing process (``start``: and its
        thread started, if no event came before); a publisher whose relays are gone, those
        they had not told."""
        self._keep_gaps(
            [
                ((task, source), _Gap(count, first_at, last_at, list(reasons)))
                for task, source, count, first_at, last_at, reasons in told
            ]
        )
        if not start:
            return
        with self._lock:
            self._idle = False
        self._start_or_wake()

    def _start_or_wake(self, wake: bool = True) -> None:
        """Given work: the thread started if none runs (kept buffered if it cannot be: the
        next call tries again), else woken if ``wake``."""
        if not self._running:
            try:
                self._start_thread()
            except Exception as exc:
                self._warn("cannot start the publisher thread (%r); buffering", exc)
        elif wake:
            self._wake()

    # -- what a link to a relay asks of its publisher (``lifecycle.client.link``) -------------

    def _relay_settings(self) -> dict[str, Any]:
        """What a relay publishes with: this publisher's settings, as JSON."""
        return {
            "url": self.url,
            "namespace": self.namespace,
            "max_bytes": self.max_bytes,
            "connect_timeout": self.connect_timeout,
            "max_backoff": self.max_backoff,
            "flush": shutdown_flush(),
            "role": process_name(),
        }

    def _portable(self, entry: Entry) -> Entry | None:
        """``entry`` as plain data ``marshal`` can carry: what an ``emit`` or ``publish`` left
        with a body of other types (a datetime, a UUID) becomes the message the thread would
        have sent (its uuid fixed here); None if even that cannot be encoded."""
        ticket, message = entry
        try:
            if type(message) is tuple:
                _, encoded = _build(message)
            else:
                encoded = messages.encode(message)
            portable = json.loads(encoded)
            marshal.dumps(portable)
        except Exception:
            return None
        return ticket, portable

    def _drop_handed(self, entry: Entry, cause: str) -> None:
        """An event that could not be handed to a relay: no longer held, counted dropped."""
        with self._lock:
            self._held -= 1
            self._lost.append(entry[0])
            self._changed.notify_all()
        self._drop(_summary(entry[1]), cause, "cannot hand an event: dropping it (%s)", cause)

    def wait(self, ticket: int | None, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until RabbitMQ has confirmed the event
        ``publish`` returned ``ticket`` for, and every one published before it: it is sent
        at once, without waiting for the linger nor for confirms of what is in flight.
        False on timeout, or for a dropped event (``None``)."""
        if ticket is None or self._pid != os.getpid():
            return False
        if not timeout >= 0:  # NaN
            timeout = 0.0
        deadline = time.monotonic() + timeout
        with self._lock:
            if ticket in self._lost:
                return False
            if self._confirmed_upto() >= ticket:
                return True
            self._urgent = max(self._urgent, ticket)
            self._waiters += 1
        self._revive()
        try:
            self._wake()
            with self._lock:
                while self._confirmed_upto() < ticket:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                        return False
                    self._changed.wait(min(remaining, 60.0))
                return ticket not in self._lost
        finally:
            with self._lock:
                self._waiters -= 1

    def flush(self, timeout: float = 5.0, *, unreachable: float | None = None) -> bool:
        """Wait until every held event was confirmed (and, while connected, every gap told);
        False on timeout. What is buffered is sent at once. ``unreachable``: also stop
        waiting once RabbitMQ has been out of reach that many seconds in a row (a stopping
        process need not wait out its whole allowance for a broker that is down)."""
        if not timeout >= 0:  # NaN
            timeout = 0.0
        now = time.monotonic()
        deadline, away_since = now + timeout, None if self._connected else now
        with self._lock:
            self._absorb()
            self._urgent = max(self._urgent, self._last_ticket)
            self._waiters += 1
        self._warn_dropped()
        self._revive()
        try:
            self._wake()
            with self._lock:
                while (
                    self._held
                    or self._lane
                    or ((self._gaps or self._relay_busy()) and self._connected)
                ):
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
        finally:
            with self._lock:
                self._waiters -= 1

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout`` seconds, default ``LIFECYCLE_SHUTDOWN_FLUSH``, and no
        longer than ``UNREACHABLE_GIVE_UP`` seconds while RabbitMQ is out of reach), then
        close the connection and end the thread; False if events were left, which a log line
        then counts, with why and which tasks they were about."""
        if timeout is None:
            timeout = shutdown_flush()
        if not timeout >= 0:  # NaN
            timeout = 0.0
        if self._pid == os.getpid():
            self._revive()
        thread = self._thread
        if self._pid != os.getpid() or thread is None or not thread.is_alive():
            return not (self._held or self._lane)
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout, unreachable=UNREACHABLE_GIVE_UP)
        with self._lock:
            self._stopping = True
            self._stop_by = max(deadline, time.monotonic() + 0.5)
            connected = self._connected
            self._changed.notify_all()
        self._wake(self._stop)
        thread.join(min(max(1.5, deadline - time.monotonic() + 1.0), 3600.0))
        with self._lock:
            self._absorb()
            # Once the thread has ended, what it had not sent is back in ``_pending``.
            tasks_left = [_task_of_item(item) for item in self._pending]
            if thread.is_alive():
                tasks_left += [_task_of_item(item) for item in self._inflight_items()]
            tasks_left += [_task_of_entry(entry) for entry in self._buffer]
            if self._link is not None:  # handed to the relay, not confirmed
                tasks_left += [_task_of_entry(entry) for entry in self._link.sent]
        self._warn_dropped()
        left = tasks_left
        if left:
            why = (
                f"RabbitMQ had not confirmed them after {timeout:g}s (LIFECYCLE_SHUTDOWN_FLUSH)"
                if connected
                else f"RabbitMQ out of reach for {UNREACHABLE_GIVE_UP:g}s"
            )
            tasks = list(dict.fromkeys(task[:200] for task in left if task is not None))
            named = ", ".join(tasks[:NAMED_TASKS]) + (
                f" and {len(tasks) - NAMED_TASKS} more" if len(tasks) > NAMED_TASKS else ""
            )
            self._warn_now("stopping with %d events not sent: %s; tasks %s", len(left), why, named)
        return flushed and not left and not thread.is_alive()

    def stats(self) -> PublisherStats:
        return PublisherStats(
            self._published,
            self._dropped,
            self._failed,
            self._held + len(self._lane),
            self._gaps_sent,
        )

    def _confirmed_upto(self) -> int:
        """Under the lock: the ticket up to which every event is confirmed."""
        if not self._held:
            return self._last_ticket
        return self._confirmed

    def _relay_busy(self) -> bool:
        """Under the lock: the relay still has something to send (gaps included)."""
        return self._link is not None and self._link.busy

    def _wake(self, callback: Callable[[], None] | None = None) -> None:
        """Have the thread run ``callback`` (default: send what is due) in its event loop;
        a thread that hands events to a relay looks at what is due, and at ``_stopping``."""
        link = self._link
        if link is not None:
            link.wake()
            return
        loop = self._loop
        if loop is not None:
            try:
                loop.add_callback_threadsafe(callback or self._pump)
            except Exception:  # the loop is closing: the thread ends anyway
                pass

    def start(self) -> None:
        """Get ready to send before the first event: start the thread, which connects (or
        starts its relay process). A Dramatiq worker does at its boot, so that its first
        messages do not pay for it. Never raises."""
        try:
            if not self._running:
                self._start_thread()
        except Exception as exc:  # the first publish tries again
            self._warn("cannot start the publisher thread (%r)", exc)

    def _revive(self) -> None:
        """Start a thread again if events are held and the last one died."""
        if (self._held or self._lane) and not self._running:
            try:
                self._start_thread()
            except Exception as exc:
                self._warn("cannot start the publisher thread (%r)", exc)

    def _start_thread(self) -> None:
        with self._lock:
            # Not running: no thread, or one past the last thing it does (``_run``).
            if not self._running:
                self._stopping = False
                if self._link is None and (
                    self.relay if self.relay is not None else relay_wanted()
                ):
                    self._link = Link(self)
                self._thread = threading.Thread(
                    target=self._run, name="lifecycle-publisher", daemon=True
                )
                self._running = True
                try:
                    self._thread.start()
                except BaseException:
                    self._running = False
                    self._idle = True  # the next publish tries again
                    raise

    def _drop(self, message: Any, cause: str, reason: str, *args: object) -> None:
        """Count a lost message against its task and source (for its ``gap`` event, which
        tells ``cause``), and log ``reason % args``."""
        self._count_drop(message, cause)
        self._warn(reason, *args)

    def _count_drop(self, message: Any, cause: str) -> None:
        """``_drop`` without the log line: fit to call under the lock."""
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
                gap.add_reason(cause)
                gap.uuid = None  # it counts more now: a new event, not a resend
            elif task and len(self._gaps) < MAX_GAPS:
                gap = self._gaps[(task, source)] = _Gap(1, at, at)
                gap.add_reason(cause)
            else:
                self._unattributed += 1

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
                "lifecycle publisher: " + reason + "; published %d, dropped %d, held %d",
                *args,
                self._published,
                self._dropped,
                self._held,
            )
        except Exception:  # a broken logging setup must not break the caller
            pass

    # -- the publisher thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            link = self._link
            if link is not None:
                if link.serve():
                    return
                # No relay could be started: this thread sends, beginning with what the
                # relays were handed and did not confirm.
                with self._lock:
                    self._buffer.extendleft(reversed(link.sent))
                    link.sent.clear()
                    self._link = None
                    # The relays' uuids (head + ticket): an event a relay sent before it
                    # died unconfirmed is sent again as the same event, not a second one.
                    self._uuid_head = link.head
                link.give_back_gaps()
            self._serve()
        finally:
            # The last thing this thread does: the next publish (or ``flush``, ``wait``)
            # may start another, which finds everything this one left.
            with self._lock:
                self._running = False
                self._idle = True

    def _serve(self) -> None:
        try:
            loop = IOLoop()
        except Exception as exc:  # out of file descriptors: the next call starts another
            self._warn("cannot start the publisher's event loop (%r)", exc)
            return
        self._loop = loop
        try:
            self._connect()
            while True:
                try:
                    loop.start()
                    return
                except Exception as exc:  # the thread must outlive anything pika raises
                    self._warn("the publisher's event loop failed (%r); reconnecting", exc)
                    self._lost_connection(self._connection)
                    self._retry_connect()
        finally:
            self._loop = None
            with self._lock:
                # Whatever was not confirmed goes back to the pending events, in order, for
                # ``close`` to count, or for a thread started later to send.
                left = sorted([*self._inflight_items(), *self._pending], key=_ticket)
                self._pending = collections.deque(left)
                self._inflight.clear()
                self._connected = self._ready = False
                self._changed.notify_all()
            self._timer = self._reconnect = None  # the loop's: gone with it
            if self._connection is not None and self._connection.is_open:
                try:
                    self._connection.close()
                except Exception:
                    pass
            try:
                loop.close()
            except Exception:
                pass

    def _inflight_items(self) -> itertools.chain[Item]:
        return itertools.chain.from_iterable(f.items for f in self._inflight.values())

    @_guarded
    def _stop(self) -> None:
        """Close the connection and end the event loop (``close``)."""
        loop = self._loop
        connection = self._connection
        if connection is not None and not (connection.is_closing or connection.is_closed):
            connection.close()  # open or opening: its close callback stops the loop
            if loop is not None:
                loop.call_later(1.0, loop.stop)  # unless it never comes
        elif connection is not None and connection.is_closing:
            pass  # another close() asked first: its close is under way
        elif loop is not None:
            loop.stop()

    @_guarded
    def _connect(self) -> None:
        self._reconnect = None
        if self._stopping:  # ``close`` came before the thread could connect
            if self._loop is not None:
                self._loop.stop()
            return
        params = pika.URLParameters(self.url)
        params.socket_timeout = self.connect_timeout
        params.stack_timeout = self.connect_timeout + 1
        params.blocked_connection_timeout = self.connect_timeout
        params.connection_attempts = 1
        self._declare_failed = False
        self._arm(max(self.linger, 0.05))  # take what comes while connecting (byte limit)
        try:
            self._connection = pika.SelectConnection(
                params,
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_close,
                custom_ioloop=self._loop,
            )
        except Exception as exc:
            self._on_open_error(None, exc)

    def _retry_connect(self, delay: float | None = None) -> None:
        if self._stopping or self._loop is None:
            if self._stopping and self._loop is not None:
                self._loop.stop()
            return
        if delay is None:
            self._backoff = min(max(0.5, self._backoff * 2), self.max_backoff)
            delay = self._backoff
        if self._reconnect is None:
            self._reconnect = self._loop.call_later(delay, self._connect)

    @_guarded
    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)

    @_guarded
    def _on_open_error(self, connection: Any, error: Any) -> None:
        self._connection = None
        self._retry_connect()
        self._warn(
            "RabbitMQ unreachable (%r), buffering events; next try in %.1fs", error, self._backoff
        )

    @_guarded
    def _on_close(self, connection: Any, reason: Any) -> None:
        if connection is not self._connection:
            return
        self._lost_connection(connection)
        if self._stopping:
            if self._loop is not None:
                self._loop.stop()
            return
        if isinstance(reason, pika.exceptions.ConnectionBlockedTimeout):
            # RabbitMQ blocks publishers (a memory or disk alarm): it is down for us.
            self._warn("RabbitMQ blocks publishing (an alarm); buffering events")
            self._retry_connect(self.max_backoff)
        else:
            self._retry_connect()
            self._warn("connection to RabbitMQ lost (%r), buffering events", reason)

    def _lost_connection(self, connection: Any) -> None:
        """The connection is gone: what it had not confirmed is sent again on the next."""
        self._connection = None
        self._lost_channel()
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:
                pass

    def _lost_channel(self) -> None:
        """The channel is gone: what it had not confirmed is sent again on the next one."""
        self._channel = None
        self._ready = False
        self._requeue(list(self._inflight.values()))
        self._inflight.clear()
        with self._lock:
            self._connected = False
            self._changed.notify_all()

    @_guarded
    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        self._tag = 0
        channel.add_on_close_callback(self._on_channel_close)
        channel.add_on_return_callback(self._on_return)
        if self._declare_failed:
            channel.confirm_delivery(self._on_confirm, callback=self._on_ready)
        else:
            self._declare(
                channel, lambda: channel.confirm_delivery(self._on_confirm, self._on_ready)
            )

    def _declare(self, channel: Any, then: Callable[[], None]) -> None:
        """The exchange, the ingest queue and its binding (``topology``), then ``then``."""
        exchange, queue = self.exchange, topology.ingest_queue(self.namespace)

        def bind(_: Any) -> None:
            channel.queue_bind(queue, exchange, routing_key="#", callback=lambda _: then())

        channel.exchange_declare(
            exchange,
            "topic",
            durable=True,
            callback=lambda _: channel.queue_declare(queue, durable=True, callback=bind),
        )

    @_guarded
    def _on_channel_close(self, channel: Any, reason: Any) -> None:
        if channel is not self._channel:
            return
        self._lost_channel()
        connection = self._connection
        if connection is None or not connection.is_open or self._stopping:
            return
        code = getattr(reason, "reply_code", None)
        if code in (403, 406) and not self._declare_failed:
            # The queue exists with other arguments, or this user may not declare: the
            # ingestor's own declaration stands, and events go to the exchange anyway.
            self._declare_failed = True
            self._warn("cannot declare the ingest queue (%s); publishing", reason)
            connection.channel(on_open_callback=self._on_channel)
            return
        self._warn("RabbitMQ closed the publisher's channel (%r); opening another", reason)
        self._pause_sending()
        if self._loop is not None:
            self._loop.call_later(self._pause, lambda: self._reopen_channel(connection))

    @_guarded
    def _reopen_channel(self, connection: Any) -> None:
        if connection is self._connection and connection.is_open and self._channel is None:
            connection.channel(on_open_callback=self._on_channel)

    @_guarded
    def _on_ready(self, _: Any) -> None:
        self._ready = True
        self._backoff = 0.0
        with self._lock:
            self._connected = True
            self._changed.notify_all()
        self._pump()

    @_guarded
    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        # RabbitMQ returns an unroutable message, then acks it: it is sent again once acked.
        try:
            flight = self._inflight.get(int(properties.correlation_id))
        except (TypeError, ValueError):
            flight = None
        if flight is not None:
            flight.returned = True

    @_guarded
    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tags = [method.delivery_tag]
        if method.multiple:  # every unconfirmed tag up to this one (0: all), oldest first
            last = method.delivery_tag or self._tag
            tags = list(itertools.takewhile(lambda t: t <= last, self._inflight))
        done: list[_Flight] = []
        again: list[_Flight] = []
        for tag in tags:
            flight = self._inflight.pop(tag, None)
            if flight is not None:
                (done if acked and not flight.returned else again).append(flight)
        returned = any(f.returned for f in again)
        if again:
            self._requeue(again)
            self._pause_sending()
            self._warn(
                "RabbitMQ %s a message of %d events: sending it again",
                "returned (unroutable)" if returned else "refused (nack)",
                sum(len(f.items) or len(f.gaps) for f in again),
            )
        elif done:
            self._pause = 0.0
        if done:
            events = sum(len(f.items) for f in done)
            with self._lock:
                self._held -= events
                self._bytes -= sum(f.size for f in done)
                self._published += events
                self._gaps_sent += sum(len(f.gaps) for f in done)
                self._confirmed = self._lowest_unconfirmed() - 1
                self._changed.notify_all()
        if returned and self._channel is not None and self._ready:
            # Someone deleted the ingest queue (or its binding): declare it again first.
            self._ready = False
            channel = self._channel
            self._declare(channel, lambda: self._on_ready(None))
            return
        self._pump()

    def _lowest_unconfirmed(self) -> int:
        """Under the lock: the lowest ticket not yet confirmed (the next one if none)."""
        lowest = self._last_ticket + 1
        if self._buffer:
            lowest = min(lowest, self._buffer[0][0])
        if self._pending:
            lowest = min(lowest, self._pending[0][3])
        for flight in self._inflight.values():
            if flight.items:
                lowest = min(lowest, flight.items[0][3])
        return lowest

    def _pause_sending(self) -> None:
        self._pause = min(max(REFUSED_PAUSE, self._pause * 2), self.max_backoff)
        self._paused_until = time.monotonic() + self._pause

    def _requeue(self, flights: list[_Flight]) -> None:
        """Messages that were not confirmed: their events go back before the pending ones,
        in publish order; the gaps they told are counted again."""
        items = [item for flight in flights for item in flight.items]
        if items:
            self._pending = collections.deque(sorted([*items, *self._pending], key=_ticket))
            self._pending_since = 0.0  # due at once
            with self._lock:
                self._failed += len(items)
        gaps = [told for flight in flights for told in flight.gaps]
        if gaps:
            self._keep_gaps(gaps)

    @_guarded
    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    @_guarded
    def _pump(self) -> None:
        try:
            self._pump_once()
        except Exception:
            self._arm(0.1)  # never deaf: the next round comes anyway
            raise

    def _pump_once(self) -> None:
        """Send what is due, as far as the window allows: everything once it has waited the
        linger, or at once if 500 events wait, someone waits for a confirm, or we stop."""
        now = time.monotonic()
        with self._lock:
            self._absorb()
            taken, self._buffer = self._buffer, collections.deque()
            urgent = self._urgent
            stopping = self._stopping
        self._warn_dropped()
        if taken:
            if not self._pending:
                self._pending_since = now
            self._take(taken)
        if not self._ready:
            # sent once the channel is ready (``_on_ready``); meanwhile keep taking what
            # comes, so that the byte limit holds while RabbitMQ is away
            self._arm(max(self.linger, 0.05))
            return
        if now < self._paused_until:
            self._arm(self._paused_until - now)
            return
        pending = self._pending
        while pending and len(self._inflight) < WINDOW:
            due = (
                stopping
                or len(pending) >= MAX_BATCH_EVENTS
                or pending[0][3] <= urgent
                or now - self._pending_since >= self.linger
            )
            if not due:
                self._arm(self._pending_since + self.linger - now)
                return
            if not self._send_batch():
                return  # the channel is closing: its callback takes over
        if not pending and len(self._inflight) < WINDOW and self._gaps:
            self._send_gaps()
        if not pending:
            with self._lock:
                if self._buffer:  # came meanwhile: next round
                    again = True
                else:
                    # Idle first, then a last look at the lane (``_note``).
                    self._idle = True
                    again = bool(self._lane)
                    if again:
                        self._idle = False
            if again and self._loop is not None:
                self._arm(0)

    def _take(self, taken: collections.deque[Entry]) -> None:
        """Encode what the callers left, into the pending events: what cannot be encoded,
        or does not fit in ``max_bytes``, is dropped and counted."""
        pending, size = self._pending, self._bytes
        lost: list[tuple[Any, str, str, object]] = []
        lost_tickets: list[int] = []
        limit = self.max_bytes
        # The bodies encoded in this round and the last, by id (each held, so no id is
        # reused meanwhile): the middleware's start and ack of a message share one body.
        bodies: dict[int, tuple[Any, str]] = {}
        before = self._bodies
        for ticket, message in taken:
            try:
                if type(message) is tuple:
                    uuid = (
                        None
                        if self._uuid_head is None
                        else f"{self._uuid_head}{ticket & 0xFFFFFFFFFFFF:012x}"
                    )
                    routing_key, body, message_id = _encode(message, bodies, before, uuid)
                else:
                    body = messages.encode(message)
                    routing_key = f"{message['source']}.{message['kind']}"
                    message_id = message.get("uuid")
                    if not _short(message_id):
                        message_id = None
            except Exception as exc:
                cause = f"the publisher could not encode the event ({exc!r})"
                lost.append((message, cause, "cannot encode an event (%r): dropping it", exc))
                lost_tickets.append(ticket)
                continue
            if size + len(body) > limit:
                cause = (
                    f"the event was larger than the publisher's whole buffer ({limit} bytes)"
                    if len(body) > limit
                    else f"the publisher's buffer was full ({limit} bytes)"
                )
                lost.append(
                    (message, cause, "the buffer is full (%d bytes): dropping events", limit)
                )
                lost_tickets.append(ticket)
                continue
            size += len(body)
            pending.append((routing_key, body, message_id, ticket))
        self._bodies = bodies
        with self._lock:
            self._bytes = size
            self._held -= len(lost)
            if lost_tickets:
                self._lost.extend(lost_tickets)
                self._changed.notify_all()
        for message, cause, reason, arg in lost:
            self._drop(_summary(message), cause, reason, arg)

    def _arm(self, delay: float) -> None:
        if self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, delay), self._on_timer)

    def _send_batch(self) -> bool:
        """The oldest pending events that fit in one message: at most MAX_BATCH_EVENTS
        events and MAX_BATCH_BYTES bytes (always the first one, whatever its size)."""
        pending = self._pending
        items: list[Item] = []
        append, take = items.append, pending.popleft
        size = 0  # the events' bytes
        for _ in range(min(len(pending), MAX_BATCH_EVENTS)):
            length = len(pending[0][1])
            # a JSON array: its brackets and a comma after each but the last
            if items and 2 + size + length + len(items) > MAX_BATCH_BYTES:
                break
            size += length
            append(take())
        if len(items) == 1 and _short(items[0][0]):
            routing_key, body, message_id, _ = items[0]
        else:
            routing_key, message_id = BATCH_ROUTING_KEY, None
            body = b"[" + b",".join([item[1] for item in items]) + b"]"
        flight = _Flight(items=items, size=size)
        if self._publish(routing_key, body, message_id, flight):
            return True
        self._pending.extendleft(reversed(items))
        self._ready = False
        return False

    def _send_gaps(self) -> None:
        """A ``gap`` event per task and source that lost events, once they can go."""
        with self._lock:
            gaps, self._gaps = self._gaps, {}
            unattributed, self._unattributed = self._unattributed, 0
        if unattributed:
            self._warn_now("%d dropped events belonged to no task that could be told", unattributed)
        name, pid = process_name(), self._reported_pid or os.getpid()
        told = list(gaps.items())
        for start in range(0, len(told), MAX_BATCH_EVENTS):
            chunk = told[start : start + MAX_BATCH_EVENTS]
            bodies = []
            for (task, source), gap in chunk:
                gap.uuid = gap.uuid or messages.new_uuid()
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
                        "reason": gap.reason(),
                    },
                )
                message["uuid"] = gap.uuid
                bodies.append(messages.encode(message))
            body = b"[" + b",".join(bodies) + b"]"
            if not self._publish(BATCH_ROUTING_KEY, body, None, _Flight(gaps=chunk)):
                self._keep_gaps(told[start:])
                return

    def _keep_gaps(self, told: list[tuple[tuple[str, str], _Gap]]) -> None:
        """Gaps not told after all: kept (uuid included) for the next try."""
        with self._lock:
            for key, rest in told:
                kept = self._gaps.get(key)
                if kept is None and len(self._gaps) >= MAX_GAPS:
                    self._unattributed += rest.count
                elif kept is None:
                    self._gaps[key] = rest  # as it was, uuid included
                else:
                    kept.count += rest.count
                    kept.first_at = min(kept.first_at, rest.first_at)
                    kept.last_at = max(kept.last_at, rest.last_at)
                    for cause in rest.reasons:
                        kept.add_reason(cause)
                    kept.uuid = None

    def _publish(
        self, routing_key: str, body: bytes, message_id: str | None, flight: _Flight
    ) -> bool:
        """One message onto the channel, remembered until confirmed; False if the channel
        refused it at once (its close callback then takes over)."""
        tag = self._tag + 1
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
            correlation_id=str(tag),
        )
        try:
            self._channel.basic_publish(self.exchange, routing_key, body, properties, True)
        except Exception as exc:
            self._warn("publish failed (%r)", exc)
            return False
        self._tag = tag
        self._inflight[tag] = flight
        return True


_ticket = operator.itemgetter(3)


def shutdown_flush() -> float:
    """``LIFECYCLE_SHUTDOWN_FLUSH``: the seconds a stopping process waits for its events."""
    try:
        value = float(config.setting("LIFECYCLE_SHUTDOWN_FLUSH") or DEFAULT_SHUTDOWN_FLUSH)
    except ValueError:
        return DEFAULT_SHUTDOWN_FLUSH
    return min(max(value, 0.0), 3600.0) if value == value else DEFAULT_SHUTDOWN_FLUSH


def _build(parts: tuple[Any, ...], uuid: str | None = None) -> tuple[dict[str, Any], bytes]:
    """The schema-1 message of an ``emit`` (what ``messages.make_message`` makes), and its
    encoding: byte for byte ``messages.encode``'s, at half its cost (only the body goes
    through ``json.dumps``)."""
    source, kind, task, status, at, txid, body = parts
    if type(task) is not str:
        task = str(task)  # a task key is text (config.task_key does the same)
    if type(body) is tuple and len(body) == 2 and type(body[1]) is str:
        body = body[0]  # a dict and its JSON text (``emit``): the dict is the message's
    elif messages.is_broker_fields(body):  # the Dramatiq middleware's start and ack
        body = messages.broker_body(body)
    message = {
        "schema": messages.SCHEMA_VERSION,
        "uuid": uuid or messages.new_uuid(),
        "task": task,
        "source": source,
        "kind": kind,
        "status": status,
        "at": _iso(at),
        "txid": txid,
        "body": body,
    }
    if not (_plain(source, kind, task, status, txid) and type(body) is dict):
        return message, messages.encode(message)
    text = _text(message["uuid"], task, source, kind, status, message["at"], txid, _dumps(body))
    return message, text


def _encode(
    parts: tuple[Any, ...],
    bodies: dict[int, tuple[Any, str]],
    before: dict[int, tuple[Any, str]],
    uuid: str | None = None,
) -> tuple[str, bytes, str | None]:
    """An ``emit``'s routing key, encoding (``_build``'s) and uuid, its body encoded once
    for all the events that share it (``bodies``: this round's; ``before``: the last's)."""
    source, kind, task, status, at, txid, body = parts
    if type(body) is tuple and len(body) == 2 and type(body[1]) is str:
        text = body[1]  # encoded by the caller
    elif type(body) is dict or messages.is_broker_fields(body):  # the latter: start, ack
        key = id(body)
        known = bodies.get(key) or before.get(key)
        if known is None or known[0] is not body:
            known = (body, _dumps(body) if type(body) is dict else messages.broker_json(body))
        bodies[key] = known
        text = known[1]
    else:
        text = None
    if text is None or not _plain(source, kind, task, status, txid):
        message, encoded = _build(parts, uuid)
        message_id = message["uuid"]
        return f"{source}.{kind}", encoded, message_id if _short(message_id) else None
    uuid = uuid or messages.new_uuid()
    return f"{source}.{kind}", _text(uuid, task, source, kind, status, _iso(at), txid, text), uuid


def _plain(source: Any, kind: Any, task: Any, status: Any, txid: Any) -> bool:
    """The event's fields are of the types the fast encoding writes as they are (the rest
    go through ``messages.encode``)."""
    return (
        type(task) is str
        and type(source) is str
        and type(kind) is str
        and (status is None or type(status) is str)
        and (txid is None or type(txid) is int)
    )


def _text(
    uuid: str,
    task: str,
    source: str,
    kind: str,
    status: str | None,
    at: str,
    txid: int | None,
    body: str,
) -> bytes:
    """``messages.encode``'s bytes of a message of plain fields (``_plain``) whose body is
    already JSON text."""
    fields = _kinds.get((source, kind))
    if fields is None:
        if len(_kinds) >= MAX_KINDS:
            _kinds.clear()
        fields = _kinds[(source, kind)] = (
            f',"source":{_quote(source)},"kind":{_quote(kind)},"status":'
        )
    text = (
        f'{{"schema":{messages.SCHEMA_VERSION},"uuid":"{uuid}","task":{_quote(task)}'
        f'{fields}{"null" if status is None else _quote(status)},"at":"{at}",'
        f'"txid":{"null" if txid is None else txid},"body":{body}}}'
    )
    return text.encode()


# By source and kind: an event's JSON from "source" to "status".
_kinds: dict[tuple[str, str], str] = {}
MAX_KINDS = 256


_quote = json.encoder.encode_basestring_ascii  # what json.dumps does to a str
_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode  # messages.encode's


_second: tuple[float, str] = (math.nan, "")  # the last whole second formatted, and its text


def _iso(at: float) -> str:
    """``datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")``, at a third
    of its cost: the date and time to the second are formatted once a second."""
    global _second
    whole = int(at)
    if whole > at:  # before the epoch: -1.5 is 1.5 s before it, not 0.5 (math.floor)
        whole -= 1
    micro = int((at - whole) * 1_000_000)
    if micro > 999_999:  # rounded up from a hair below the next second
        micro = 999_999
    known = _second  # one read: another publisher's thread may replace it meanwhile
    if known[0] != whole:
        known = _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{known[1]}.{micro:06d}+00:00"


def _summary(message: Any) -> dict[str, Any]:
    """The task, source and time of a buffered message, built or an ``emit``'s parts (for
    counting it as dropped)."""
    if type(message) is tuple:
        try:
            at: str | None = _iso(message[4])
        except Exception:  # the reason it was dropped, maybe: its time is "now"
            at = None
        return {"task": message[2], "source": message[0], "at": at}
    return message if isinstance(message, dict) else {}


def _short(text: object) -> bool:
    """Whether AMQP can carry ``text`` as a short string (routing key, message id)."""
    try:
        return type(text) is str and len(text.encode()) <= 255
    except UnicodeEncodeError:
        return False


def _task_of_entry(entry: Entry) -> str | None:
    task = _summary(entry[1]).get("task")
    return task if isinstance(task, str) else None


def _task_of_item(item: Item) -> str | None:
    """The task of an encoded message (None if it cannot be read)."""
    try:
        found = json.loads(item[1])
        task = found.get("task") if isinstance(found, dict) else None
    except ValueError:
        return None
    return task if isinstance(task, str) else None


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


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
