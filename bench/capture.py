"""Benchmark capture: the trigger's cost on UPDATEs and concurrent commits; ingest's throughput.

    DATABASE_URL=postgres://... python -m bench.capture [--updates 20000] [--writers 8]

(a) Tables shaped like ``lab_task`` (``LIKE ... INCLUDING ALL``) with the same 1,000 rows:
one without a trigger, one with the installed capture trigger (``lifecycle capture
install``, writing to ``lifecycle_event``), and, unless ``--no-compare``, one each for the
capture function of migration 0002 (before), that of 0005 (after) and a floor (a trigger
that only writes a bare event row, which the event table's trigger announces: what any
capture in the writer's transaction costs). Each of those three is created from its
migration's own SQL in a schema of its own, writing to a fresh copy of the event table
with its indexes and notify trigger, notifying a channel nobody listens to. The UPDATEs
alternate between the tables in rounds, in a rotating order, so that drift on a shared
machine hits all of them alike; the overhead is given from the total time and as the
median of the rounds' overheads.

Two workloads: bare single-row UPDATEs of the status (autocommit), and the lab worker's
transaction (``BEGIN``; ``UPDATE`` of the status with ``updated_at`` and the columns the
worker writes with it; ``COMMIT``: what Django's ``atomic()`` sends, without the ORM's own
time). Both with ``synchronous_commit`` on (as deployed: the WAL flush of each commit is
part of the price), and the bare UPDATEs also with it off (CPU only: the trigger's
relative cost is largest there, and nothing in the measured path is unlogged). The trigger
function's own time per row comes from ``EXPLAIN ANALYZE`` of an UPDATE of all rows.

(b) The ingestor's throughput: ``--events`` events put in a queue of a namespace of its own
(``<ns>-bench-ingest-<hex>``), as the client's publisher sends them now (JSON arrays of up
to 500 events, routing key ``batch``) and one event a message (an old client), consumed by
the ``Ingestor`` until all are stored; beside the floor, a bare COPY of the same rows
(already COPY's text) into the same table from the same process. Rounds in a rotating
order, medians.

(c) Concurrent writers: ``--writers`` connections (8), each in a thread of its own and on
rows of its own, doing single-row UPDATEs of the status in autocommit with
``synchronous_commit`` on, for ``--writer-seconds`` (1.5) a table in each of
``--writer-rounds`` (6) rounds in a rotating order; commits a second, median of the rounds.
Three tables shaped like ``lab_task``: one without trigger (the floor), one with the
installed capture trigger into the outbox and no follower waiting (no row in
``lifecycle_capture.listener``: what writers see while a follower copies in a loop), and one
the same with a row there (a follower waiting: every commit notifies, as every commit did
before the listener table). PostgreSQL commits the transactions that sent a NOTIFY one at a
time, server-wide (a lock held from before the commit through its WAL flush), which is what
the third pays; each capture variant is given as a share of the floor. The outbox is
emptied after each table's turn, and the rows it holds then must be the turn's commits.

Everything it creates is removed at the end: the schemas, the events, the queues, the
outbox rows and the listener row.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench import harness

TARGET_TRIGGER_OVERHEAD = 25.0  # percent
TARGET_INGEST_RATE = 30_000.0  # events per second, stored, as clients send them now
TARGET_GENERATED_OVER_FLOOR = 10.0  # percent: the per-table function against the floor
SCHEMA = "lifecycle_bench"
STATUSES = ["RUNNING", "COMPLETED", "FAILED", "PENDING"]
CONFIGS = ("on:update", "on:worker", "off:update")
BENCH_CHANNEL = "lifecycle_bench_events"
COMPARE_TRIGGER = "bench_capture"
OUTBOX_VARIANTS = ("generated", "generic")  # capture install --database, into the outbox
OUTBOX = "lifecycle_capture.outbox"
T = TypeVar("T")

# The floor: one plpgsql call, one event row with its indexes, its NOTIFY (sent by the
# event table's trigger), with the same SECURITY DEFINER and search_path as the real one.
FLOOR_FUNCTION = r"""
CREATE FUNCTION lifecycle_capture() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
BEGIN
    INSERT INTO lifecycle_event (task_key, source, kind, status, at, txid)
    VALUES (NEW.id::text, 'db', 'update', NEW.status, clock_timestamp(),
            pg_current_xact_id()::text::bigint);
    RETURN NULL;
END
$fn$;
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--updates", type=int, default=20_000, help="UPDATEs per table")
    parser.add_argument("--rows", type=int, default=1_000, help="rows in each table")
    parser.add_argument("--rounds", type=int, default=40, help="alternations between tables")
    parser.add_argument(
        "--trigger-configs",
        default=",".join(CONFIGS),
        help="synchronous_commit:workload pairs, workload update or worker "
        f"(default {','.join(CONFIGS)})",
    )
    parser.add_argument(
        "--no-compare",
        dest="compare",
        action="store_false",
        help="only the installed trigger against none (not the 0002, 0005 and floor copies)",
    )
    parser.add_argument("--events", type=int, default=50_000, help="events to ingest")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="events per transaction (the ingestor's)"
    )
    parser.add_argument("--ingest-rounds", type=int, default=3)
    parser.add_argument(
        "--ingest-methods",
        default="copy",
        help="the ingestor's insert methods, comma-separated: copy, staged, executemany",
    )
    parser.add_argument(
        "--writers", type=int, default=8, help="concurrent writer connections (writers)"
    )
    parser.add_argument(
        "--writer-seconds",
        type=float,
        default=1.5,
        help="how long the writers write each table in each round (writers)",
    )
    parser.add_argument("--writer-rounds", type=int, default=6)
    parser.add_argument("--skip-trigger", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-writers", action="store_true")


def handle(command: Any, options: dict[str, Any]) -> int | None:
    ok = True
    if not options["skip_trigger"]:
        for config in options.get("trigger_configs", ",".join(CONFIGS)).split(","):
            sync, _, style = config.strip().partition(":")
            ok &= bench_trigger(
                options["updates"],
                options["rows"],
                options["rounds"],
                sync,
                style or "update",
                compare=options.get("compare", True),
            )
    if not options["skip_ingest"]:
        for method in options["ingest_methods"].split(","):
            result = bench_ingest(
                options["events"], method.strip(), options["batch_size"], options["ingest_rounds"]
            )
            ok &= not result["lost"]
    if not options["skip_writers"]:
        writers = bench_writers(
            options["writers"], options["writer_seconds"], options["writer_rounds"]
        )
        ok &= not writers["lost"]
    return 0 if ok else 1


# -- (a) the trigger ---------------------------------------------------------------------------


@dataclass
class Variant:
    """One table of the run: its label, its trigger (if any) and the event table it fills."""

    name: str
    label: str
    trigger: str | None = None  # the trigger's name on the table
    events: str | None = None  # the event table its events go to
    rounds: list[float] = field(default_factory=list)  # seconds per round
    captured: int = 0
    function_us: float = float("nan")

    @property
    def table(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def seconds(self) -> float:
        return sum(self.rounds)


def bench_trigger(
    updates: int,
    rows: int,
    rounds: int,
    synchronous_commit: str,
    style: str = "update",
    *,
    compare: bool = True,
) -> bool:
    """Time UPDATEs with and without the trigger; True unless the deployed case misses."""
    import psycopg

    from lifecycle.ingest import database_conninfo

    if style not in {"update", "worker"}:
        raise ValueError(f"unknown workload {style!r} (update or worker)")
    if synchronous_commit not in {"on", "off"}:
        raise ValueError(f"synchronous_commit {synchronous_commit!r}: on or off")
    sync = synchronous_commit
    variants = [
        Variant("plain", "without trigger"),
        Variant("watched", "with trigger", "lifecycle_capture", "public.lifecycle_event"),
    ]
    if compare:
        variants += [
            Variant("v0002", "0002 function (before)", COMPARE_TRIGGER),
            Variant("v0005", "0005 function (after)", COMPARE_TRIGGER),
            Variant("floor", "floor: bare row + NOTIFY", COMPARE_TRIGGER),
            # capture install --database: the function generated for this table, into the
            # outbox of the schema lifecycle_capture (here in the bench's own database).
            Variant(
                "generated",
                "generated function (outbox)",
                "lifecycle_capture",
                "lifecycle_capture.outbox",
            ),
            # The same with --generic (what a non-superuser's install gets): the generic
            # function, which reads the row as jsonb and so needs no rebuilding.
            Variant(
                "generic",
                "generic function (outbox)",
                "lifecycle_capture",
                "lifecycle_capture.outbox",
            ),
        ]
    conninfo = database_conninfo(application_name="lifecycle-bench")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        had_outbox = _fresh_schema(conn, variants)
        try:
            keys = [str(uuid.uuid4()) for _ in range(rows)]
            for variant in variants:
                _create(conn, variant, keys)
            conn.execute(f"SET synchronous_commit = {sync}")

            per_round = max(1, updates // rounds)
            # A warm-up for each, so none pays for the first prepares and cache misses.
            for variant in variants:
                _updates(conn, variant.table, keys, 500, 0, style)
            done = rounds_done = 0
            while done < updates:
                n = min(per_round, updates - done)
                shift = rounds_done % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    start = time.perf_counter()
                    _updates(conn, variant.table, keys, n, done, style)
                    variant.rounds.append(time.perf_counter() - start)
                done += n
                rounds_done += 1
            for variant in variants:
                if variant.events:
                    variant.captured = _count(conn, variant)
                    variant.function_us = _trigger_function_time(conn, variant)
        finally:
            conn.execute(
                "DELETE FROM lifecycle_event WHERE body->>'table' = %s", [f"{SCHEMA}.watched"]
            )
            _drop(conn, variants, had_outbox)

    plain, watched = variants[0], variants[1]
    overhead = (watched.seconds / plain.seconds - 1) * 100
    ok = overhead <= TARGET_TRIGGER_OVERHEAD
    what = "single-row UPDATEs" if style == "update" else "lab-worker transactions"
    expected = updates + 500
    lost = [v.label for v in variants if v.events and v.captured != expected]
    lines = [
        f"trigger (synchronous_commit={sync}): {updates} {what} per table,"
        f" {rounds_done} interleaved rounds",
        f"  without trigger: {updates / plain.seconds:9.0f} rows/s"
        f"  ({plain.seconds / updates * 1e6:.0f} µs)",
        f"  with trigger:    {updates / watched.seconds:9.0f} rows/s"
        f"  ({watched.seconds / updates * 1e6:.0f} µs)  [{watched.captured} events captured]",
        f"  trigger function alone: {watched.function_us:.0f} µs per row (EXPLAIN ANALYZE)",
        f"  overhead: {overhead:+.1f}% time per transaction"
        f" (median of rounds {_median_overhead(watched, plain):+.1f}%)"
        f" (target ≤ {TARGET_TRIGGER_OVERHEAD:.0f}%: {'met' if ok else 'MISSED'})",
    ]
    if compare:
        lines.append("  in the same rounds, each writing to a fresh copy of the event table:")
        for variant in variants[2:]:
            lines.append(
                f"    {variant.label:<26} {updates / variant.seconds:7.0f} rows/s"
                f"  ({variant.seconds / updates * 1e6:4.0f} µs)"
                f"  {(variant.seconds / plain.seconds - 1) * 100:+6.1f}%"
                f" (median of rounds {_median_overhead(variant, plain):+.1f}%)"
                f"  function {variant.function_us:3.0f} µs/row"
            )
    by_name = {v.name: v for v in variants}
    if "generated" in by_name and "floor" in by_name:
        against = (by_name["generated"].seconds / by_name["floor"].seconds - 1) * 100
        met = against <= TARGET_GENERATED_OVER_FLOOR
        lines.append(
            f"  generated function against the floor: {against:+.1f}%"
            f" (target ≤ {TARGET_GENERATED_OVER_FLOOR:.0f}%: {'met' if met else 'MISSED'})"
        )
    if "generic" in by_name and "floor" in by_name:
        against = (by_name["generic"].seconds / by_name["floor"].seconds - 1) * 100
        lines.append(f"  generic function against the floor: {against:+.1f}%")
    if lost:
        lines.append(f"  EVENTS MISSING OR DOUBLED ({expected} expected): {', '.join(lost)}")
    print("\n".join(lines), flush=True)
    # The target is for the deployed setting and the plain UPDATE; the rest is context.
    return not lost and (ok or sync != "on" or style != "update")


def _median_overhead(variant: Variant, plain: Variant) -> float:
    ratios = [a / b for a, b in zip(variant.rounds, plain.rounds, strict=True)]
    return (statistics.median(ratios) - 1) * 100


def _create(conn: Any, variant: Variant, keys: list[str]) -> None:
    """The variant's table with the rows, and its trigger with what that trigger needs."""
    from psycopg import sql

    from lifecycle.capture import trigger
    from lifecycle.events import NOTIFY_CHANNEL

    table = sql.Identifier(SCHEMA, variant.name)
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE public.lab_task INCLUDING ALL)").format(table))
    with conn.cursor().copy(
        sql.SQL(
            "COPY {} (id, config, status, error, executions, created_at, updated_at) FROM STDIN"
        ).format(table)
    ) as copy:
        for key in keys:
            copy.write_row((key, '{"mode": "bench", "sleep": 0}', "PENDING", "", 0, "now", "now"))
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
    if variant.name == "watched":
        trigger.install(variant.table, "id", "status")
    elif _in_outbox(variant):
        from lifecycle.capture import outbox
        from lifecycle.ingest import database_conninfo

        outbox.install(
            database_conninfo(), variant.table, "id", "status", generic=variant.name == "generic"
        )
    elif variant.trigger:
        schema = f"{SCHEMA}_{variant.name}"
        variant.events = f"{schema}.lifecycle_event"
        ddls = [d.replace(f"'{NOTIFY_CHANNEL}'", f"'{BENCH_CHANNEL}'") for d in _ddl(variant.name)]
        with conn.transaction():
            capture_copy(conn, schema, ddls)
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {}"
                    " FOR EACH ROW EXECUTE FUNCTION {}('id', 'status')"
                ).format(
                    sql.Identifier(variant.trigger),
                    table,
                    sql.Identifier(schema, "lifecycle_capture"),
                )
            )


def capture_copy(conn: Any, schema: str, ddls: list[str]) -> None:
    """A migration's capture function copied into ``schema``, beside its own copy of the
    event table, inside the caller's transaction: the migrations' SQL names nothing by
    schema, so ``ddls`` run with ``schema`` first on the search path make copies there."""
    from psycopg import sql

    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE public.lifecycle_event INCLUDING ALL)").format(
            sql.Identifier(schema, "lifecycle_event")
        )
    )
    conn.execute(sql.SQL("SET LOCAL search_path = {}, public").format(sql.Identifier(schema)))
    for ddl in ddls:
        conn.execute(ddl)


def _ddl(name: str) -> list[str]:
    from lifecycle import sql

    app = sql.HERE.parent
    m0002 = sql.migration(app, "0002_capture_trigger")  # the frozen files the migrations run
    m0005 = sql.migration(app, "0005_cheaper_capture")
    if name == "v0002":
        return [m0002["capture_function"], m0002["notify_function"]]
    # The event table's notify trigger as 0002 created it, with 0005's function.
    notify = [m0002["notify_function"], m0005["notify_function"]]
    if name == "v0005":
        return [m0005["body_type"], m0005["capture_function"], *notify]
    return [FLOOR_FUNCTION, *notify]


def _in_outbox(variant: Variant) -> bool:
    """Whether the variant's table gets the installed capture trigger into the outbox."""
    return variant.name in OUTBOX_VARIANTS or variant.events == OUTBOX


def _fresh_schema(conn: Any, variants: list[Variant]) -> bool:
    """What an earlier run left dropped, and the bench's schema made anew; whether capture's
    outbox was there before (then it is left in place afterwards)."""
    had_outbox = bool(
        conn.execute("SELECT to_regclass('lifecycle_capture.outbox') IS NOT NULL").fetchone()[0]
    )
    _drop(conn, variants, had_outbox)
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    return had_outbox


def _drop(conn: Any, variants: list[Variant], had_outbox: bool = True) -> None:
    for variant in (v for v in variants if _in_outbox(v)):
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", [variant.table]).fetchone()[0]:
            from lifecycle.capture import outbox
            from lifecycle.capture.trigger import CaptureError
            from lifecycle.ingest import database_conninfo

            try:
                outbox.remove(database_conninfo(), variant.table)  # its trigger and function
            except CaptureError:
                pass  # not installed yet
    copies = [v for v in variants if v.name != "watched" and not _in_outbox(v)]
    schemas = [SCHEMA] + [f"{SCHEMA}_{v.name}" for v in copies if v.trigger]
    conn.execute(f"DROP SCHEMA IF EXISTS {', '.join(schemas)} CASCADE")
    if any(_in_outbox(v) for v in variants):
        exists = conn.execute("SELECT to_regclass('lifecycle_capture.outbox')").fetchone()[0]
        if exists and not had_outbox:
            conn.execute("DROP SCHEMA lifecycle_capture CASCADE")  # the bench created it
        elif exists:
            conn.execute(
                "DELETE FROM lifecycle_capture.outbox WHERE table_name = ANY(%s)",
                [[v.table for v in variants if _in_outbox(v)]],
            )


def _count(conn: Any, variant: Variant) -> int:
    if variant.name == "watched":
        row = conn.execute(
            "SELECT count(*) FROM lifecycle_event WHERE body->>'table' = %s", [variant.table]
        ).fetchone()
    elif _in_outbox(variant):
        row = conn.execute(
            "SELECT count(*) FROM lifecycle_capture.outbox WHERE table_name = %s", [variant.table]
        ).fetchone()
    else:
        row = conn.execute(f"SELECT count(*) FROM {variant.events}").fetchone()
    return row[0] if row else 0


def _updates(conn: Any, table: str, keys: list[str], n: int, offset: int, style: str) -> None:
    from psycopg.types.json import Jsonb

    if style == "worker":
        # As lifecycle.lab.work does it: one transaction per status, the row's other
        # columns written with it (RUNNING: started_at, executions; COMPLETED: output,
        # error, finished_at).
        start = (
            f"UPDATE {table} SET status = 'RUNNING', started_at = now(), updated_at = now(),"
            " executions = executions + 1 WHERE id = %s"
        )
        finish = (
            f"UPDATE {table} SET status = 'COMPLETED', output = %s, error = '',"
            " finished_at = now(), updated_at = now() WHERE id = %s"
        )
        for i in range(offset, offset + n):
            key = keys[(i // 2) % len(keys)]  # each row: started, then completed
            with conn.transaction():
                if i % 2 == 0:
                    conn.execute(start, [key])
                else:
                    conn.execute(finish, [Jsonb({"sum": i, "count": 3}), key])
        return
    update = f"UPDATE {table} SET status = %s, updated_at = now() WHERE id = %s"
    for i in range(offset, offset + n):
        conn.execute(update, [STATUSES[i % len(STATUSES)], keys[i % len(keys)]])


def _trigger_function_time(conn: Any, variant: Variant) -> float:
    """Microseconds per row inside the trigger, from EXPLAIN ANALYZE of a rolled-back UPDATE."""
    import psycopg

    best = float("inf")
    for _ in range(3):
        with conn.transaction():
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    f"EXPLAIN ANALYZE UPDATE {variant.table}"
                    " SET status = 'BENCH', updated_at = now()"
                )
            )
            found = re.search(
                rf"Trigger {re.escape(variant.trigger or '')}: time=([\d.]+) calls=(\d+)", plan
            )
            if found:
                best = min(best, float(found[1]) * 1000 / int(found[2]))
            raise psycopg.Rollback()
    return best


# -- (b) the ingestor --------------------------------------------------------------------------


INGEST_SHAPES = ("batches", "single")  # what a client sends now, and an old client


def bench_ingest(
    count: int, method: str = "copy", batch_size: int | None = None, rounds: int = 3
) -> dict[str, Any]:
    """The ingestor's throughput on a queue holding ``count`` events, two ways: as the
    client's publisher sends them now (JSON arrays of up to 500 events, routing key
    ``batch``, persistent, as ``Publisher`` batches them) and one event a message (an old
    client), beside the floor: a bare COPY of the same rows into the same table from this
    process, in transactions of as many rows, the rows made COPY's text before the clock
    starts (what PostgreSQL takes at most). Rounds in a rotating order; medians."""
    import pika
    import psycopg
    from django.conf import settings

    from lifecycle import events
    from lifecycle.client import publisher
    from lifecycle.ingest import (
        BATCH_EVENTS,
        INGEST,
        Ingestor,
        copy_text,
        database_conninfo,
        dead_queue_name,
        declare_topology,
        ingest_queue_name,
    )

    batch_size = batch_size or BATCH_EVENTS
    namespace = f"{settings.LIFECYCLE_NAMESPACE}-bench-ingest-{uuid.uuid4().hex[:8]}"
    prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}-"
    messages = [
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
        for i in range(count)
    ]
    encoded = [events.encode(m) for m in messages]
    bodies: dict[str, list[tuple[str, bytes]]] = {
        "single": [
            (f"{m['source']}.{m['kind']}", e) for m, e in zip(messages, encoded, strict=True)
        ],
        "batches": [
            (publisher.BATCH_ROUTING_KEY, b"[" + b",".join(chunk) + b"]")
            for chunk in _chunks(encoded, publisher.MAX_BATCH_EVENTS)
        ],
    }
    rows = [events.validate(m).as_row() for m in messages]
    runs: dict[str, list[dict[str, float]]] = {"floor": [], **{s: [] for s in INGEST_SHAPES}}
    stored: dict[str, tuple[int, int]] = {}
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    db = psycopg.connect(database_conninfo("lifecycle-bench"), autocommit=True)

    def clear() -> tuple[int, int]:
        return harness.stored_and_cleared(db, prefix)

    def floor() -> dict[str, float]:
        payloads = [copy_text(chunk) for chunk in _chunks(rows, batch_size)]
        cpu, start = time.process_time(), time.perf_counter()
        for payload in payloads:
            with db.transaction(), db.cursor() as cur:
                with cur.copy(INGEST["copy_events"]) as copy:
                    copy.write(payload)
        return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}

    def ingest(shape: str) -> dict[str, float]:
        queue = ingest_queue_name(namespace)
        exchange = f"{namespace}.events"
        persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        for routing_key, body in bodies[shape]:
            channel.basic_publish(exchange, routing_key, body, persistent)
        deadline = time.monotonic() + 60
        while channel.queue_declare(queue, passive=True).method.message_count < len(bodies[shape]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {shape} messages did not all reach {queue}")
            connection.sleep(0.05)
        ingestor = Ingestor(
            namespace=namespace, method=method, batch_size=batch_size, log_every=3600
        )
        cpu, start = time.process_time(), time.perf_counter()
        result = ingestor.run(until=lambda s: s.received >= count)
        return {
            "seconds": time.perf_counter() - start,
            "cpu": time.process_time() - cpu,
            "db": result.db_seconds,
            "batches": result.batches,
        }

    try:
        declare_topology(channel, namespace)
        clear()
        order = ["floor", *INGEST_SHAPES]
        for r in range(rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                runs[name].append(floor() if name == "floor" else ingest(name))
                stored[name] = clear()
                if stored[name] != (count, count):
                    break
    finally:
        clear()
        db.close()
        for queue in (ingest_queue_name(namespace), dead_queue_name(namespace)):
            channel.queue_delete(queue)
        channel.exchange_delete(f"{namespace}.events")
        connection.close()

    rate = {n: statistics.median(count / r["seconds"] for r in rs) for n, rs in runs.items()}
    cpu = {n: statistics.median(r["cpu"] / count * 1e6 for r in rs) for n, rs in runs.items()}
    lost = {n: s for n, s in stored.items() if s != (count, count)}
    met = rate["batches"] >= TARGET_INGEST_RATE and not lost
    lines = [
        f"ingest ({method}, transactions of up to {batch_size:,} events): {count:,} events,"
        f" median of {rounds} rounds",
        f"  floor, a bare COPY of the rows:  {rate['floor']:9,.0f} events/s stored"
        f"  ({cpu['floor']:.1f} µs of this process's CPU per event)",
    ]
    for shape in INGEST_SHAPES:
        how = (
            f"{len(bodies[shape]):,} messages of up to {publisher.MAX_BATCH_EVENTS} events"
            if shape == "batches"
            else "one event a message"
        )
        db_share = statistics.median(r["db"] / r["seconds"] for r in runs[shape])
        lines.append(
            f"  ingestor, {shape + ':':8s}          {rate[shape]:9,.0f} events/s stored"
            f"  ({rate[shape] / rate['floor']:.0%} of the floor; {how};"
            f" {cpu[shape]:.1f} µs CPU per event, the writer busy {db_share:.0%} of the time)"
        )
    lines.append(
        f"  target: ≥ {TARGET_INGEST_RATE:,.0f}/s as clients send now (batches):"
        f" {'met' if met else 'MISSED'}"
        + (f"; LOST OR DOUBLED (rows, distinct uuids): {lost}" if lost else "")
    )
    print("\n".join(lines), flush=True)
    return {"events": count, "rate": rate, "cpu_us": cpu, "lost": lost, "met": met}


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- (c) concurrent writers --------------------------------------------------------------------


def bench_writers(
    writers: int = 8, seconds: float = 1.5, rounds: int = 6, rows: int = 1_000
) -> dict[str, Any]:
    """Commits a second of ``writers`` connections, each in a thread of its own, doing
    single-row UPDATEs of the status in autocommit (``synchronous_commit`` on), each on
    rows of its own, for ``seconds`` a table in each of ``rounds`` rounds in a rotating
    order: a table without trigger (the floor), one with the installed capture trigger
    into the outbox and no follower waiting (no row in ``lifecycle_capture.listener``:
    what writers see while the follower copies), and one the same with a row there (a
    follower waiting: every commit notifies, and PostgreSQL commits the transactions that
    notified one at a time). The outbox is emptied after each table's turn. Medians."""
    import threading

    import psycopg
    from psycopg import sql

    from lifecycle.ingest import database_conninfo

    variants = [
        Variant("writers_plain", "no trigger (the floor)"),
        Variant("writers_idle", "capture, no follower waiting", "lifecycle_capture", OUTBOX),
        Variant("writers_waiting", "capture, a follower waiting", "lifecycle_capture", OUTBOX),
    ]
    plain, idle, waiting = variants
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    commits: dict[str, int] = {v.name: 0 for v in variants}
    lost: dict[str, tuple[int, int]] = {}  # table: (commits, rows in the outbox), one turn
    conninfo = database_conninfo(application_name="lifecycle-bench")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        had_outbox = _fresh_schema(conn, variants)
        pool: list[psycopg.Connection[Any]] = []
        try:
            keys = [str(uuid.uuid4()) for _ in range(rows)]
            for variant in variants:
                _create(conn, variant, keys)
            # Followers of this database waiting now (there should be none): their rows
            # make the writers without ours notify too.
            others = conn.execute("SELECT count(*) FROM lifecycle_capture.listener").fetchone()[0]  # type: ignore[index]
            for _ in range(writers):
                pool.append(psycopg.connect(conninfo, autocommit=True))
                pool[-1].execute("SET synchronous_commit = on")
            done = [0] * writers  # UPDATEs each writer made so far: where its statuses are

            def turn(variant: Variant, length: float) -> tuple[int, float]:
                """All writers on the variant's table for ``length`` seconds: commits, time."""
                update = sql.SQL("UPDATE {} SET status = %s, updated_at = now() WHERE id = %s")
                query = update.format(sql.Identifier(SCHEMA, variant.name)).as_string(conn)
                counts = [0] * writers
                ends = [0.0] * writers
                errors: list[BaseException] = []
                start = [0.0]
                barrier = threading.Barrier(
                    writers, action=lambda: start.__setitem__(0, time.perf_counter())
                )

                def write(i: int) -> None:
                    mine = keys[i::writers]
                    n = done[i]
                    try:
                        barrier.wait()
                        deadline = start[0] + length
                        while time.perf_counter() < deadline:
                            pool[i].execute(
                                query, [STATUSES[n % len(STATUSES)], mine[n % len(mine)]]
                            )
                            n += 1
                    except BaseException as exc:  # raised again below
                        errors.append(exc)
                        barrier.abort()
                    ends[i] = time.perf_counter()
                    counts[i] = n - done[i]
                    done[i] = n

                if variant is waiting:  # a follower waits: every commit notifies
                    conn.execute(
                        "INSERT INTO lifecycle_capture.listener VALUES (0) ON CONFLICT DO NOTHING"
                    )
                threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                if errors:
                    raise errors[0]
                if variant is waiting:
                    conn.execute("DELETE FROM lifecycle_capture.listener WHERE pid = 0")
                total = sum(counts)
                if _in_outbox(variant):
                    captured = _count(conn, variant)
                    if captured != total:
                        lost[variant.label] = (total, captured)
                    conn.execute(
                        "DELETE FROM lifecycle_capture.outbox WHERE table_name = %s",
                        [variant.table],
                    )
                    conn.execute("VACUUM lifecycle_capture.outbox")
                # Each turn finds its table as the last left it, not whatever autovacuum
                # would be doing to it meanwhile.
                conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(SCHEMA, variant.name)))
                return total, max(ends) - start[0]

            for variant in variants:  # a warm-up: the first prepares and cache misses
                turn(variant, min(0.5, seconds))
            for r in range(rounds):
                shift = r % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    n, elapsed = turn(variant, seconds)
                    rates[variant.name].append(n / elapsed)
                    commits[variant.name] += n
        finally:
            for writer in pool:
                writer.close()
            if conn.execute("SELECT to_regclass('lifecycle_capture.listener')").fetchone()[0]:  # type: ignore[index]
                conn.execute("DELETE FROM lifecycle_capture.listener WHERE pid = 0")
            _drop(conn, variants, had_outbox)

    rate = {v.name: statistics.median(rates[v.name]) for v in variants}
    share = {v.name: rate[v.name] / rate[plain.name] for v in variants}
    round_share = {
        v.name: statistics.median(
            a / b for a, b in zip(rates[v.name], rates[plain.name], strict=True)
        )
        for v in variants
    }
    lines = [
        f"writers (synchronous_commit=on): {writers} connections, each its own thread and"
        f" rows, single-row UPDATEs in autocommit, {seconds:g} s a table in each of"
        f" {rounds} interleaved rounds",
    ]
    for variant in variants:
        line = (
            f"  {variant.label + ':':<30} {rate[variant.name]:7,.0f} commits/s"
            f"  ({writers / rate[variant.name] * 1e3:.2f} ms a commit per writer;"
            f" rounds {' / '.join(f'{x:,.0f}' for x in rates[variant.name])})"
        )
        if variant is not plain:
            line += (
                f"  {share[variant.name]:.0%} of the floor"
                f" (median of rounds {round_share[variant.name]:.0%})"
            )
        lines.append(line)
    if others:
        lines.append(
            f"  NOTE: {others} follower(s) of this database were waiting"
            " (lifecycle_capture.listener): without ours, the writers notified too"
        )
    if lost:
        lines.append(f"  EVENTS MISSING OR DOUBLED (commits, captured): {lost}")
    print("\n".join(lines), flush=True)
    return {
        "writers": writers,
        "seconds": seconds,
        "rounds": rounds,
        "rate": {"floor": rate[plain.name], "idle": rate[idle.name], "waiting": rate[waiting.name]},
        "share": {"idle": share[idle.name], "waiting": share[waiting.name]},
        "commits": commits,
        "others_waiting": others,
        "lost": lost,
    }


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
