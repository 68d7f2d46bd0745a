"""The ingestor: events from the exchange into ``lifecycle_event``, in batches.

It consumes the durable queue ``{NAMESPACE}.ingest`` (bound to the exchange with ``#``),
validates each message with ``events.parse_batch`` (a message holds one event, or a JSON
array of up to 1,000: a publisher's batch, each event judged alone) and inserts the good
ones of a batch of deliveries in one transaction with ``ON CONFLICT (uuid, at) DO
NOTHING``, so a redelivered message is harmless. Messages are acked only after that
commit. A malformed message (or event of a batch) goes to ``{NAMESPACE}.dead`` with its
reason in the header ``x-lifecycle-reason`` and is acked: it never stops the ingestor, nor
costs the good events around it. While the database is
unreachable nothing is acked; the batch is retried until it lands.
"""

from __future__ import annotations

import bisect
import collections
import functools
import logging
import math
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika
import psycopg
from django.conf import settings

from lifecycle import events, sql
from lifecycle.client import topology
from lifecycle.runtime.database import conninfo, insert_each, one_line

logger = logging.getLogger(__name__)

INGEST = sql.load("ingest")
REASON_HEADER = "x-lifecycle-reason"
BATCH_EVENTS = 2000  # events a transaction holds at most
# How a batch is inserted: "copy" straight into the event table (the staged way after a
# duplicate), "staged" always COPY into a temporary table then INSERT ... ON CONFLICT DO
# NOTHING (a quarter more of PostgreSQL's time), "executemany" one INSERT a row.
METHODS = ("copy", "staged", "executemany")
STAGED_AFTER_DUPLICATE = 10
# Messages RabbitMQ may hand over before their ack, at most and at least: the ingestor sets
# it between the two to hold about three batches of events (Ingestor._fit_prefetch).
PREFETCH = 8000
MIN_PREFETCH = 16
SWITCH_INTERVAL = 0.001  # seconds: see Ingestor.run


def ingest_queue_name(namespace: str | None = None) -> str:
    return f"{namespace or settings.LIFECYCLE_NAMESPACE}.ingest"


def dead_queue_name(namespace: str | None = None) -> str:
    return f"{namespace or settings.LIFECYCLE_NAMESPACE}.dead"


def declare_topology(channel: Any, namespace: str | None = None) -> None:
    """The exchange, the ingest queue bound to every routing key, and the dead-letter queue
    (the publishers declare the first two as well: ``lifecycle.client.topology``)."""
    topology.declare(channel, namespace or settings.LIFECYCLE_NAMESPACE, dead=True)


def database_conninfo(application_name: str | None = "lifecycle-ingest") -> str:
    """Django's database for the ingestor; pass None to keep the settings' application_name."""
    return conninfo(application_name=application_name)


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0
    db_retries: int = 0
    db_seconds: float = 0.0  # spent storing batches (a share of the run: the rest is AMQP)

    def line(self) -> str:
        return (
            f"received {self.received}, stored {self.stored}, duplicates {self.duplicates}, "
            f"dead-lettered {self.dead}, batches {self.batches}, "
            f"database retries {self.db_retries}, {self.db_seconds:.1f}s in the database"
        )


# Errors that say "these values", not "the database": a batch hitting one is retried row by
# row so only the bad event is dead-lettered. Anything else is retried as a whole, later.
DATA_ERRORS = (psycopg.DataError, UnicodeError)


class Ingestor:
    """Consume, validate, insert, ack. ``run`` until ``stop`` (a signal handler may call it).

    Two threads: this one (every AMQP call: consume, judge each message, dead-letter, ack)
    and a writer (``_Writer``) that stores one batch while this one reads the next, so that
    PostgreSQL's time and Python's overlap on two cores. A batch is acked, and its bad
    events dead-lettered, here, once the writer has committed it, in the order batches
    were read. ``batch_size`` counts events (a publisher's message holds up to 500),
    ``prefetch`` messages.
    """

    def __init__(
        self,
        *,
        amqp_url: str | None = None,
        namespace: str | None = None,
        conninfo: str | None = None,
        batch_size: int = BATCH_EVENTS,
        batch_ms: float = 50,
        prefetch: int = PREFETCH,
        method: str = "copy",
        log_every: float = 60.0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown insert method {method!r}")
        self.amqp_url = amqp_url or settings.AMQP_URL
        self.namespace = namespace or settings.LIFECYCLE_NAMESPACE
        self.conninfo = conninfo
        self.batch_size = batch_size
        self.batch_seconds = batch_ms / 1000
        self.prefetch = prefetch
        self.method = method
        self.log_every = log_every
        self._staged_batches = 0  # batches still to store the staged way (after a duplicate)
        self._arrived: collections.deque[tuple[Any, Any, bytes]] = collections.deque()
        self._consumer: str | None = None
        self._prefetch = 0
        self.stats = IngestStats()
        self._stopping = False
        self._db: psycopg.Connection[Any] | None = None
        self._amqp: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._last_log = time.monotonic()
        self._logged = IngestStats()

    def stop(self) -> None:
        """Ask ``run`` to store what it has read, ack it and return (safe from a signal
        handler)."""
        self._stopping = True

    # -- the loop ---------------------------------------------------------------------------

    def run(self, until: Callable[[IngestStats], bool] | None = None) -> IngestStats:
        """Ingest until ``stop()`` is called or ``until(stats)`` is true; returns the counts.

        Meanwhile the process hands the GIL over every millisecond rather than every 5: the
        writer thread takes it a dozen times a batch, after each round trip with PostgreSQL,
        and would otherwise wait up to 5 ms each time for this thread to let go of it."""
        backoff = 0.5
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
        try:
            while not self._stopping:
                try:
                    self._connect_amqp()
                    backoff = 0.5
                    self._consume(until)
                    return self.stats
                except _Stopped:
                    return self.stats  # the unacked batch goes back to the queue on close
                except pika.exceptions.AMQPError as exc:
                    # Unacked deliveries go back to the queue; what was committed is harmless.
                    logger.warning(
                        "ingest: RabbitMQ connection lost (%r); retry in %.1fs", exc, backoff
                    )
                    self._close_amqp()
                    self._sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
            return self.stats
        finally:
            sys.setswitchinterval(switch)
            self._close_amqp()
            self._close_db()
            logger.info("ingest: stopped; %s", self.stats.line())

    def _consume(self, until: Callable[[IngestStats], bool] | None) -> None:
        connection, channel = self._amqp, self._channel
        assert connection is not None
        arrived = self._arrived = collections.deque()
        self._consumer = None
        self._subscribe(self._first_prefetch())
        writer = _Writer(self, wake=functools.partial(_wake, connection))
        inflight: collections.deque[_Batch] = collections.deque()  # handed over, not acked
        batch: _Batch | None = None
        try:
            while True:
                self._settle(inflight)
                while arrived:
                    if batch is None:
                        batch = _Batch(time.monotonic())
                    self._take(batch, *arrived.popleft())
                    if batch.received >= self.batch_size:
                        self._hand_over(batch, writer, inflight)
                        self._fit_prefetch(batch)
                        batch = None
                now = time.monotonic()
                if batch is not None and now - batch.started >= self.batch_seconds:
                    self._hand_over(batch, writer, inflight)
                    self._fit_prefetch(batch)
                    batch = None
                if now - self._last_log >= self.log_every:
                    self._log_summary(now)
                if self._stopping or (until is not None and until(self.stats)):
                    break
                # Until a delivery, the writer's wake-up (a batch stored), or the batch's time
                wait = 0.5 if batch is None else batch.started + self.batch_seconds - now
                connection.process_data_events(time_limit=max(wait, 0.0))
            if batch is not None:
                self._hand_over(batch, writer, inflight)
            while inflight:
                self._settle(inflight)
                if inflight:
                    connection.process_data_events(time_limit=0.5)
            # Unread deliveries go back to the queue: now (pika rejects those it holds) or
            # when the connection closes (those read into ``arrived``).
            channel.basic_cancel(self._consumer)
        finally:
            writer.close()

    # RabbitMQ's prefetch counts messages, and a message holds one event (an old client's)
    # or up to 500 (a publisher's batch, up to 1 MiB). Enough single events to keep the
    # writer busy would be gigabytes of batches: so the prefetch follows the messages' size,
    # to about three batches of events (one being read, one waiting, one being stored).

    def _first_prefetch(self) -> int:
        return min(self.prefetch, MIN_PREFETCH)

    def _fit_prefetch(self, batch: _Batch) -> None:
        per_message = batch.received / len(batch.deliveries)
        wanted = math.ceil(3 * self.batch_size / per_message)
        wanted = max(MIN_PREFETCH, min(self.prefetch, wanted))
        if wanted >= 2 * self._prefetch or 4 * wanted <= self._prefetch:
            self._subscribe(wanted)

    def _subscribe(self, prefetch: int) -> None:
        """(Re)start the consumer with this prefetch: RabbitMQ gives a consumer the prefetch
        set before it started. The deliveries pika holds and has not handed to ``_arrive``
        yet, it rejects back to the queue at its head, where they come from again in their
        order: they are all later than those handed over."""
        channel = self._channel
        if self._consumer is not None:
            channel.basic_cancel(self._consumer)
        channel.basic_qos(prefetch_count=prefetch)
        logger.debug("ingest: prefetch %d messages (was %d)", prefetch, self._prefetch)
        self._prefetch = prefetch
        self._consumer = channel.basic_consume(ingest_queue_name(self.namespace), self._arrive)

    def _arrive(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._arrived.append((method, properties, body))

    def _take(self, batch: _Batch, method: Any, properties: Any, body: bytes) -> None:
        """Judge one delivery's events into the batch."""
        try:
            judged = events.judge(body)
        except events.MalformedEvent as exc:
            judged = events.Judged([], [(0, exc)], 1, body)
        except Exception as exc:  # e.g. RecursionError on deeply nested JSON
            reason = events.MalformedEvent(f"cannot parse: {type(exc).__name__}")
            judged = events.Judged([], [(0, reason)], 1, body)
        batch.firsts.append(len(batch.rows))
        batch.deliveries.append((method, properties, judged))
        batch.rows += judged.rows
        batch.received += judged.count

    def _hand_over(
        self, batch: _Batch, writer: _Writer, inflight: collections.deque[_Batch]
    ) -> None:
        """Give a batch to the writer, waiting (and serving RabbitMQ) while it is busy with two."""
        assert self._amqp is not None
        if self.method == "copy":
            # Here rather than on the writer's thread, which would wait for the GIL while
            # this one reads the next batch: a few waits a batch, not one a row.
            batch.payload = copy_text(batch.rows)
        inflight.append(batch)
        while not writer.put(batch):
            self._settle(inflight)
            self._amqp.process_data_events(time_limit=0.05)

    def _settle(self, inflight: collections.deque[_Batch]) -> None:
        """Dead-letter the bad events of each batch the writer has stored, then ack it, in
        the order the batches were read."""
        while inflight and inflight[0].done:
            batch = inflight.popleft()
            if batch.error is not None:
                raise batch.error
            dead = [
                (d, place, str(reason))
                for d, (_, _, judged) in enumerate(batch.deliveries)
                for place, reason in judged.refused
            ]
            for row, reason in batch.rejected:
                d = bisect.bisect_right(batch.firsts, row) - 1
                dead.append((d, batch.deliveries[d][2].place(row - batch.firsts[d]), reason))
            for d, place, reason in sorted(dead):
                method, properties, judged = batch.deliveries[d]
                self._dead_letter(method, properties, judged.raw(place), reason)
            self._channel.basic_ack(batch.deliveries[-1][0].delivery_tag, multiple=True)
            self.stats.received += batch.received
            self.stats.stored += batch.stored
            self.stats.duplicates += len(batch.rows) - len(batch.rejected) - batch.stored
            self.stats.dead += len(dead)
            self.stats.batches += 1

    # -- the database (the writer's thread) -------------------------------------------------

    def _store(
        self,
        rows: list[events.Row],
        abandoned: Callable[[], bool],
        payload: bytes | None = None,
    ) -> tuple[int, list[tuple[int, str]]]:
        """Insert in one transaction; retry while the database is unreachable, never giving up
        (stop() gives up: nothing is acked then). Returns (rows inserted, rows rejected by
        their index)."""
        delay = 0.5
        while True:
            try:
                db = self._connect_db()
                try:
                    with db.transaction():
                        return self._insert(db, rows, payload), []
                except psycopg.errors.UniqueViolation:
                    # A redelivery: the staged way skips what is stored; redeliveries come
                    # in runs (a consumer's unacked messages, after it lost its connection).
                    self._staged_batches = STAGED_AFTER_DUPLICATE
                    continue
                except DATA_ERRORS:
                    return self._insert_one_by_one(db, rows)
            except (
                psycopg.OperationalError,
                psycopg.InterfaceError,
                psycopg.ProgrammingError,
            ) as exc:
                # ProgrammingError too (e.g. the table is missing): only an operator can fix
                # it, and dead-lettering every event in the meantime would lose them.
                self.stats.db_retries += 1
                logger.warning("ingest: database unavailable (%s); retry in %.1fs", exc, delay)
                self._close_db()
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    if self._stopping or abandoned():
                        raise _Stopped from None
                    time.sleep(0.05)
                delay = min(delay * 2, 10.0)

    def _insert(
        self, db: psycopg.Connection[Any], rows: list[events.Row], payload: bytes | None = None
    ) -> int:
        with db.cursor() as cur:
            if self.method == "executemany":
                cur.executemany(INGEST["insert_row"], rows)
                return max(cur.rowcount, 0)
            if self.method == "copy" and self._staged_batches == 0:
                # Straight into the event table: a uuid stored before (a redelivery) fails
                # the whole COPY, and _store takes the staged way below for a while.
                with cur.copy(INGEST["copy_events"]) as copy:
                    copy.write(copy_text(rows) if payload is None else payload)
                return len(rows)
            self._staged_batches = max(self._staged_batches - 1, 0)
            with cur.copy(INGEST["copy_staging"]) as copy:
                for n, row in enumerate(rows):
                    copy.write_row((n, *row))
            cur.execute(INGEST["insert_from_staging"])
            return max(cur.rowcount, 0)

    def _insert_one_by_one(
        self, db: psycopg.Connection[Any], rows: list[events.Row]
    ) -> tuple[int, list[tuple[int, str]]]:
        with db.transaction(), db.cursor() as cur:
            stored, refused = insert_each(
                cur, INGEST["insert_row"], rows, savepoint=db.transaction, refused_by=DATA_ERRORS
            )
        rejected = []
        for i, exc in refused:
            # The log has PostgreSQL's words; the dead letter's header, which goes wherever
            # the queue is read, says what refused it and its SQLSTATE.
            logger.warning(
                "ingest: event %s refused by the database: %s", rows[i][0], one_line(exc)
            )
            state = getattr(exc, "sqlstate", None) or type(exc).__name__
            rejected.append((i, f"refused by the database: a value it cannot store ({state})"))
        return stored, rejected

    def _connect_db(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed:
            self._db = psycopg.connect(
                self.conninfo or database_conninfo(), autocommit=True, connect_timeout=5
            )
            self._db.execute(INGEST["create_staging"])
        return self._db

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except Exception:
                pass

    # -- RabbitMQ ---------------------------------------------------------------------------

    def _connect_amqp(self) -> None:
        params = pika.URLParameters(self.amqp_url)
        params.socket_timeout = 5
        self._amqp = pika.BlockingConnection(params)
        channel = self._amqp.channel()
        declare_topology(channel, self.namespace)
        channel.confirm_delivery()  # a dead letter is on disk before its original is acked
        self._channel = channel

    def _close_amqp(self) -> None:
        connection, self._amqp, self._channel = self._amqp, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:
                pass

    def _dead_letter(self, method: Any, properties: Any, body: bytes, reason: str) -> None:
        logger.warning("ingest: dead-lettered an event: %s", " ".join(reason.split())[:300])
        headers = dict(properties.headers or {})
        headers.update(
            {
                REASON_HEADER: reason[:1000],
                "x-lifecycle-exchange": method.exchange,
                "x-lifecycle-routing-key": method.routing_key,
            }
        )
        self._channel.basic_publish(
            "",
            dead_queue_name(self.namespace),
            body,
            pika.BasicProperties(
                content_type=properties.content_type,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=properties.message_id,
                headers=headers,
            ),
        )

    def _sleep(self, seconds: float) -> None:
        """Wait without starving the AMQP connection's heartbeats; wake early on stop()."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (remaining := deadline - time.monotonic()) > 0:
            if self._amqp is not None and self._amqp.is_open:
                self._amqp.sleep(min(remaining, 0.2))
            else:
                time.sleep(min(remaining, 0.2))

    def _log_summary(self, now: float) -> None:
        self._last_log = now
        if self.stats != self._logged:
            self._logged = IngestStats(**vars(self.stats))
            logger.info("ingest: %s", self.stats.line())


_SPECIAL = re.compile(r"[\\\t\n\r]")  # what COPY's text format escapes
_ESCAPED = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(rows: list[events.Row]) -> bytes:
    """Rows as COPY's text format takes them (``copy_events``' columns). Their uuid, source,
    kind, time and txid need no escape (validated); a NUL or a lone surrogate in the text
    makes PostgreSQL refuse the COPY with a DataError, as psycopg's own formatting would."""
    lines = []
    special, escaped, null = _SPECIAL.search, _ESCAPED, "\\N"
    for uuid, task, source, kind, status, at, txid, body in rows:
        if special(task):
            task = task.translate(escaped)
        if status is None:
            status = null
        elif special(status):
            status = status.translate(escaped)
        if special(body):
            body = body.translate(escaped)
        lines.append(
            f"{uuid}\t{task}\t{source}\t{kind}\t{status}\t{at.isoformat()}\t"
            f"{null if txid is None else txid}\t{body}\n"
        )
    return "".join(lines).encode("utf-8", "surrogatepass")


class _Stopped(Exception):
    """Stop requested while the database was down: leave the batch unacked and return."""


@dataclass(eq=False)
class _Batch:
    """Deliveries stored in one transaction: read and judged by the consumer, stored by the
    writer, then dead-lettered and acked by the consumer."""

    started: float
    rows: list[events.Row] = field(default_factory=list)
    deliveries: list[tuple[Any, Any, events.Judged]] = field(default_factory=list)
    firsts: list[int] = field(default_factory=list)  # each delivery's first row in ``rows``
    received: int = 0  # events, good and bad
    payload: bytes | None = None  # the rows as COPY takes them, made by the consumer
    # The writer's outcome, read once ``done``
    done: bool = False
    stored: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (row, reason)
    error: BaseException | None = None


class _Writer:
    """Stores batches in order on a thread of its own, with the ingestor's connection.

    It holds at most two (one storing, one waiting), so at most three batches are read and
    not acked: ``prefetch`` must cover them. When a batch is stored it wakes the consumer
    (``wake``, through pika's one thread-safe call)."""

    def __init__(self, ingestor: Ingestor, wake: Callable[[], None]) -> None:
        self._ingestor = ingestor
        self._wake = wake
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._thread.start()

    def put(self, batch: _Batch) -> bool:
        try:
            self._queue.put(batch, timeout=0.05)
        except queue.Full:
            return False
        return True

    def close(self) -> None:
        """Stop after the batch being stored (what it was not given is not stored: the
        caller acks nothing more, and RabbitMQ delivers it again)."""
        self._abandoned = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        ingestor = self._ingestor
        while (batch := self._queue.get()) is not None:
            try:
                started = time.perf_counter()
                batch.stored, batch.rejected = ingestor._store(
                    batch.rows, lambda: self._abandoned, batch.payload
                )
                ingestor.stats.db_seconds += time.perf_counter() - started
            except BaseException as exc:  # the consumer raises it, in its own thread
                batch.error = exc
            batch.done = True
            self._wake()


def _wake(connection: pika.BlockingConnection) -> None:
    """Interrupt the consumer's wait in ``process_data_events``, from another thread."""
    try:
        connection.add_callback_threadsafe(_nothing)
    except Exception:
        pass  # the connection is gone: the consumer finds out by itself


def _nothing() -> None:
    pass
