"""Benchmark capture: the trigger's cost on UPDATEs, and the ingestor's throughput.

    DATABASE_URL=postgres://... python -m lifecycle.cli.bench_capture [--updates 20000]

(a) Two tables shaped like ``lab_task`` (``LIKE ... INCLUDING ALL``) with the same rows, one
with the capture trigger; single-row UPDATEs of the status, each its own transaction on
one connection, alternating between the tables in rounds so drift hits both alike. Run with
``synchronous_commit`` on (as deployed: the WAL flush of each commit is part of the price)
and off (CPU only: the trigger's relative cost is largest there), then as the lab worker
writes (``SELECT ... FOR UPDATE`` and ``UPDATE`` in one transaction). The trigger function's
own time per row comes from ``EXPLAIN ANALYZE``.

(b) Events published through ``Publisher`` to a namespace of its own (``<ns>-bench``), then
consumed by the ``Ingestor`` until all are stored, once per insert method.

Everything it creates is removed at the end: the schema, the events, the queues.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import uuid
from typing import Any

TARGET_TRIGGER_OVERHEAD = 25.0  # percent
TARGET_INGEST_RATE = 5000.0  # events per second
SCHEMA = "lifecycle_bench"
STATUSES = ["RUNNING", "COMPLETED", "FAILED", "PENDING"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--updates", type=int, default=20_000, help="UPDATEs per table")
    parser.add_argument("--rows", type=int, default=1_000, help="rows in each table")
    parser.add_argument("--rounds", type=int, default=10, help="alternations between tables")
    parser.add_argument("--events", type=int, default=50_000, help="events to ingest")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--skip-trigger", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")


def handle(command: Any, options: dict[str, Any]) -> int | None:
    ok = True
    if not options["skip_trigger"]:
        for sync, style in (("on", "update"), ("off", "update"), ("on", "worker")):
            ok &= bench_trigger(options["updates"], options["rows"], options["rounds"], sync, style)
    if not options["skip_ingest"]:
        for method in ("copy", "executemany"):
            ok &= bench_ingest(options["events"], method, options["batch_size"])
    return 0 if ok else 1


# -- (a) the trigger ---------------------------------------------------------------------------


def bench_trigger(
    updates: int, rows: int, rounds: int, synchronous_commit: str, style: str = "update"
) -> bool:
    """Time UPDATEs with and without the trigger; True unless the deployed case misses."""
    import psycopg
    from psycopg import sql

    from lifecycle.capture import triggers
    from lifecycle.capture.ingest import database_conninfo

    conninfo = database_conninfo(application_name="lifecycle-bench")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        try:
            keys = [str(uuid.uuid4()) for _ in range(rows)]
            for table in ("plain", "watched"):
                conn.execute(
                    sql.SQL("CREATE TABLE {} (LIKE public.lab_task INCLUDING ALL)").format(
                        sql.Identifier(SCHEMA, table)
                    )
                )
                with conn.cursor().copy(
                    sql.SQL(
                        "COPY {} (id, config, status, error, executions, created_at, updated_at)"
                        " FROM STDIN"
                    ).format(sql.Identifier(SCHEMA, table))
                ) as copy:
                    for key in keys:
                        copy.write_row(
                            (key, '{"mode": "bench", "sleep": 0}', "PENDING", "", 0, "now", "now")
                        )
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(SCHEMA, table)))
            triggers.install(f"{SCHEMA}.watched", "id", "status")
            conn.execute(
                f"SET synchronous_commit = {'on' if synchronous_commit == 'on' else 'off'}"
            )

            elapsed = {"plain": 0.0, "watched": 0.0}
            per_round = max(1, updates // rounds)
            done = 0
            # A warm-up for both, so neither pays for the first prepares and cache misses.
            for table in ("plain", "watched"):
                _updates(conn, table, keys, 500, 0, style)
            rounds_done = 0
            while done < updates:
                n = min(per_round, updates - done)
                order = ("plain", "watched") if rounds_done % 2 == 0 else ("watched", "plain")
                for table in order:
                    start = time.perf_counter()
                    _updates(conn, table, keys, n, done, style)
                    elapsed[table] += time.perf_counter() - start
                done += n
                rounds_done += 1
            captured = conn.execute(
                "SELECT count(*) FROM lifecycle_event WHERE body->>'table' = %s",
                [f"{SCHEMA}.watched"],
            ).fetchone()
            function_us = _trigger_function_time(conn)
        finally:
            conn.execute(
                "DELETE FROM lifecycle_event WHERE body->>'table' = %s", [f"{SCHEMA}.watched"]
            )
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")

    plain_rate, watched_rate = updates / elapsed["plain"], updates / elapsed["watched"]
    overhead = (elapsed["watched"] / elapsed["plain"] - 1) * 100
    ok = overhead <= TARGET_TRIGGER_OVERHEAD
    what = "single-row UPDATEs" if style == "update" else "worker-style transactions"
    print(
        f"trigger (synchronous_commit={synchronous_commit}): {updates} {what} each\n"
        f"  without trigger: {plain_rate:9.0f} rows/s  ({1e6 / plain_rate:.0f} µs)\n"
        f"  with trigger:    {watched_rate:9.0f} rows/s  ({1e6 / watched_rate:.0f} µs)"
        f"  [{captured[0] if captured else 0} events captured]\n"
        f"  trigger function alone: {function_us:.0f} µs per row (EXPLAIN ANALYZE)\n"
        f"  overhead: {overhead:+.1f}% time per transaction"
        f" (target ≤ {TARGET_TRIGGER_OVERHEAD:.0f}%: {'met' if ok else 'MISSED'})",
        flush=True,
    )
    # The target is for the deployed setting and the plain UPDATE; the rest is context.
    return ok or synchronous_commit != "on" or style != "update"


def _updates(conn: Any, table: str, keys: list[str], n: int, offset: int, style: str) -> None:
    update = f"UPDATE {SCHEMA}.{table} SET status = %s, updated_at = now() WHERE id = %s"
    lock = f"SELECT status FROM {SCHEMA}.{table} WHERE id = %s FOR UPDATE"
    for i in range(offset, offset + n):
        key = keys[i % len(keys)]
        if style == "worker":
            with conn.transaction():
                conn.execute(lock, [key]).fetchone()
                conn.execute(update, [STATUSES[i % len(STATUSES)], key])
        else:
            conn.execute(update, [STATUSES[i % len(STATUSES)], key])


def _trigger_function_time(conn: Any) -> float:
    """Microseconds per row inside the trigger, from EXPLAIN ANALYZE of a rolled-back UPDATE."""
    import psycopg

    best = float("inf")
    for _ in range(3):
        with conn.transaction():
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    f"EXPLAIN ANALYZE UPDATE {SCHEMA}.watched"
                    " SET status = 'BENCH', updated_at = now()"
                )
            )
            found = re.search(r"Trigger lifecycle_capture: time=([\d.]+) calls=(\d+)", plan)
            if found:
                best = min(best, float(found[1]) * 1000 / int(found[2]))
            raise psycopg.Rollback()
    return best


# -- (b) the ingestor --------------------------------------------------------------------------


def bench_ingest(count: int, method: str, batch_size: int) -> bool:
    import pika
    import psycopg
    from django.conf import settings

    from lifecycle import events
    from lifecycle.capture.ingest import (
        Ingestor,
        database_conninfo,
        dead_queue_name,
        declare_topology,
        ingest_queue_name,
    )
    from lifecycle.capture.publisher import Publisher

    namespace = f"{settings.LIFECYCLE_NAMESPACE}-bench"
    prefix = f"bench-capture-{uuid.uuid4().hex[:8]}-"
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    try:
        declare_topology(channel, namespace)
        channel.queue_purge(ingest_queue_name(namespace))

        publisher = Publisher(exchange=f"{namespace}.events", maxsize=count + 1)
        start = time.perf_counter()
        for i in range(count):
            publisher.publish(
                events.make_message(
                    source="broker",
                    kind=("enqueue", "start", "ack")[i % 3],
                    task=f"{prefix}{i // 3}",
                    body={
                        "message_id": str(uuid.uuid4()),
                        "actor": "run_task",
                        "queue": "lifecycle.lab",
                        "attempt": 1,
                        "pid": os.getpid(),
                        "thread": "Thread-1",
                        "redelivered": False,
                    },
                )
            )
        queued = time.perf_counter() - start
        publisher.close(timeout=120)
        published = time.perf_counter() - start
        stats = publisher.stats()
        deadline = time.monotonic() + 30
        while (
            channel.queue_declare(ingest_queue_name(namespace), passive=True).method.message_count
            < count
        ):
            if time.monotonic() > deadline:
                break
            connection.sleep(0.05)

        ingestor = Ingestor(
            namespace=namespace, method=method, batch_size=batch_size, log_every=3600
        )
        start = time.perf_counter()
        result = ingestor.run(until=lambda s: s.received >= count)
        ingested = time.perf_counter() - start

        with psycopg.connect(database_conninfo("lifecycle-bench"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT uuid) FROM lifecycle_event WHERE task_key LIKE %s",
                [prefix + "%"],
            ).fetchone()
            conn.execute("DELETE FROM lifecycle_event WHERE task_key LIKE %s", [prefix + "%"])
    finally:
        for queue in (ingest_queue_name(namespace), dead_queue_name(namespace)):
            channel.queue_delete(queue)
        channel.exchange_delete(f"{namespace}.events")
        connection.close()

    rate = count / ingested
    ok = rate >= TARGET_INGEST_RATE and row is not None and row[0] == count
    print(
        f"ingest ({method}, batches of {batch_size}): {count} events\n"
        f"  publish():  {count / queued:9.0f} events/s queued by callers"
        f"  ({queued / count * 1e6:.1f} µs each)\n"
        f"  publisher:  {stats.published / published:9.0f} events/s sent to RabbitMQ"
        f"  (published {stats.published}, dropped {stats.dropped}, failed {stats.failed})\n"
        f"  ingestor:   {rate:9.0f} events/s stored  ({result.batches} batches,"
        f" {row[0] if row else 0} rows, {row[1] if row else 0} distinct;"
        f" {result.db_seconds / ingested:.0%} of the time in the database,"
        f" {result.db_seconds / max(result.batches, 1) * 1000:.1f} ms per batch)"
        f"  (target ≥ {TARGET_INGEST_RATE:.0f}/s: {'met' if ok else 'MISSED'})",
        flush=True,
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()

    class Printer:
        stdout = sys.stdout
        stderr = sys.stderr

    parser = argparse.ArgumentParser(prog="bench_capture", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return handle(Printer(), vars(parser.parse_args(argv))) or 0


if __name__ == "__main__":
    sys.exit(main())
