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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import psycopg
from django.conf import settings

from lifecycle import events, sql
from lifecycle.client import topology
from lifecycle.database import conninfo

logger = logging.getLogger(__name__)

INGEST = sql.load("ingest")
REASON_HEADER = "x-lifecycle-reason"


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
    """Consume, validate, insert, ack. ``run`` until ``stop`` (a signal handler may call it)."""

    def __init__(
        self,
        *,
        amqp_url: str | None = None,
        namespace: str | None = None,
        conninfo: str | None = None,
        batch_size: int = 500,
        batch_ms: float = 50,
        prefetch: int = 1000,
        method: str = "copy",
        log_every: float = 60.0,
    ) -> None:
        if method not in {"copy", "executemany"}:
            raise ValueError(f"unknown insert method {method!r}")
        self.amqp_url = amqp_url or settings.AMQP_URL
        self.namespace = namespace or settings.LIFECYCLE_NAMESPACE
        self.conninfo = conninfo
        self.batch_size = batch_size
        self.batch_seconds = batch_ms / 1000
        self.prefetch = max(prefetch, batch_size)
        self.method = method
        self.log_every = log_every
        self.stats = IngestStats()
        self._stopping = False
        self._db: psycopg.Connection[Any] | None = None
        self._amqp: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._last_log = time.monotonic()
        self._logged = IngestStats()

    def stop(self) -> None:
        """Ask ``run`` to finish its batch, ack it and return (safe from a signal handler)."""
        self._stopping = True

    # -- the loop ---------------------------------------------------------------------------

    def run(self, until: Callable[[IngestStats], bool] | None = None) -> IngestStats:
        """Ingest until ``stop()`` is called or ``until(stats)`` is true; returns the counts."""
        backoff = 0.5
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
            self._close_amqp()
            self._close_db()
            logger.info("ingest: stopped; %s", self.stats.line())

    def _consume(self, until: Callable[[IngestStats], bool] | None) -> None:
        batch: list[tuple[Any, Any, bytes]] = []
        started = 0.0
        queue = ingest_queue_name(self.namespace)
        channel = self._channel
        for method, properties, body in channel.consume(
            queue, inactivity_timeout=self.batch_seconds
        ):
            now = time.monotonic()
            if method is not None:
                if not batch:
                    started = now
                batch.append((method, properties, body))
            if batch and (
                method is None
                or len(batch) >= self.batch_size
                or now - started >= self.batch_seconds
            ):
                self._process(batch)
                batch = []
            if now - self._last_log >= self.log_every:
                self._log_summary(now)
            if self._stopping or (until is not None and until(self.stats)):
                break
        if batch:
            self._process(batch)
        channel.cancel()  # prefetched, unprocessed deliveries go back to the queue

    def _process(self, batch: list[tuple[Any, Any, bytes]]) -> None:
        """Insert the good events of a batch of deliveries, dead-letter the bad ones (each
        event of a publisher's batch alone), then ack all of it."""
        good: list[tuple[int, events.IncomingEvent]] = []
        # Every event of the deliveries, in order: (delivery, its bytes for a dead letter)
        each: list[tuple[int, bytes]] = []
        dead: list[tuple[int, str]] = []
        for d, (_, _, body) in enumerate(batch):
            try:
                judged = events.parse_batch(body)
            except events.MalformedEvent as exc:
                judged = [(body, exc)]
            except Exception as exc:  # e.g. RecursionError on deeply nested JSON
                judged = [(body, events.MalformedEvent(f"cannot parse: {type(exc).__name__}"))]
            for raw, outcome in judged:
                if isinstance(outcome, events.MalformedEvent):
                    dead.append((len(each), str(outcome)))
                else:
                    good.append((len(each), outcome))
                each.append((d, raw))
        if good:
            start = time.perf_counter()
            stored, rejected = self._store(good)
            self.stats.db_seconds += time.perf_counter() - start
            self.stats.stored += stored
            self.stats.duplicates += len(good) - len(rejected) - stored
            dead.extend(rejected)
        for i, reason in sorted(dead):
            method, properties, _ = batch[each[i][0]]
            self._dead_letter(method, properties, each[i][1], reason)
        self._channel.basic_ack(batch[-1][0].delivery_tag, multiple=True)
        self.stats.received += len(each)
        self.stats.dead += len(dead)
        self.stats.batches += 1

    # -- the database -----------------------------------------------------------------------

    def _store(
        self, good: list[tuple[int, events.IncomingEvent]]
    ) -> tuple[int, list[tuple[int, str]]]:
        """Insert in one transaction; retry while the database is unreachable, never giving up
        (stop() gives up: nothing is acked then). Returns (rows inserted, rows rejected)."""
        rows = [event.as_row() for _, event in good]
        delay = 0.5
        while True:
            try:
                db = self._connect_db()
                try:
                    with db.transaction():
                        return self._insert(db, rows), []
                except DATA_ERRORS:
                    return self._insert_one_by_one(db, good, rows)
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
                if self._stopping:
                    raise _Stopped from None
                self._sleep(delay)
                delay = min(delay * 2, 10.0)

    def _insert(self, db: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> int:
        with db.cursor() as cur:
            if self.method == "executemany":
                cur.executemany(INGEST["insert_row"], rows)
                return max(cur.rowcount, 0)
            with cur.copy(INGEST["copy_staging"]) as copy:
                for n, row in enumerate(rows):
                    copy.write_row((n, *row))
            cur.execute(INGEST["insert_from_staging"])
            return max(cur.rowcount, 0)

    def _insert_one_by_one(
        self,
        db: psycopg.Connection[Any],
        good: list[tuple[int, events.IncomingEvent]],
        rows: list[tuple[Any, ...]],
    ) -> tuple[int, list[tuple[int, str]]]:
        stored, rejected = 0, []
        with db.transaction(), db.cursor() as cur:
            for (i, _), row in zip(good, rows, strict=True):
                try:
                    with db.transaction():  # a savepoint: one bad row spoils only itself
                        cur.execute(INGEST["insert_row"], row)
                        stored += max(cur.rowcount, 0)
                except DATA_ERRORS as exc:
                    rejected.append((i, f"rejected by the database: {exc}"))
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
        channel.basic_qos(prefetch_count=self.prefetch)
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


class _Stopped(Exception):
    """Stop requested while the database was down: leave the batch unacked and return."""
