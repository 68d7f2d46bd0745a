"""Benchmark the ingest role on one node and on two: competing ingestor processes.

    python -m bench.ingest_nodes [--events 100000] [--rounds 3]

A namespace of its own (``<ns>-bench-nodes-<hex>``, declared and deleted by the benchmark).
Each round starts ``lifecycle ingest`` processes (one, as one node runs, then two, as two
nodes do; the order rotates), waits until each consumes ``<ns>.ingest``, publishes
``--events`` broker events in batches of up to 500 as the client's publisher sends them,
and times the first publish to the last event stored (counted in the event table every
50 ms). Each round must store every event exactly once, or the run fails. Printed: events/s
with one and with two, the ratio, and the CPU of the ingestors and of PostgreSQL (this
machine's ``postgres`` processes) per event.

On a machine whose cores are taken by PostgreSQL and one ingestor, a second ingestor adds
little: what it measures is how much, here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import harness

ROOT = Path(__file__).resolve().parents[1]
WAYS = {"one node": 1, "two nodes": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=100_000, help="events a round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way")


def _postgres_cpu() -> float:
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                total += harness.process_cpu(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return total


def bench_ingest_nodes(count: int = 100_000, rounds: int = 3) -> dict[str, Any]:
    import pika
    import psycopg
    from django.conf import settings

    from lifecycle import events
    from lifecycle.client import publisher, topology
    from lifecycle.ingest import database_conninfo, declare_topology

    namespace = f"{settings.LIFECYCLE_NAMESPACE}-bench-nodes-{uuid.uuid4().hex[:8]}"
    queue = topology.ingest_queue(namespace)
    exchange = f"{namespace}.events"
    runs: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    wrong: dict[str, tuple[int, int]] = {}
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    db = psycopg.connect(database_conninfo("lifecycle-bench"), autocommit=True)
    env = {
        **os.environ,
        "LIFECYCLE_NAMESPACE": namespace,
        "LIFECYCLE_PROCESS_ROLE": "ingest",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }

    def one_round(way: str, prefix: str) -> dict[str, float]:
        encoded = [
            events.encode(
                events.make_message(
                    source="broker",
                    kind=("enqueue", "start", "ack")[i % 3],
                    task=f"{prefix}{i // 3}",
                    body={"message_id": str(uuid.uuid4()), "actor": "run_task", "attempt": 1},
                )
            )
            for i in range(count)
        ]
        bodies = [
            b"[" + b",".join(encoded[i : i + publisher.MAX_BATCH_EVENTS]) + b"]"
            for i in range(0, count, publisher.MAX_BATCH_EVENTS)
        ]
        processes = [
            subprocess.Popen(
                [sys.executable, "manage.py", "lifecycle", "ingest"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(WAYS[way])
        ]
        try:
            deadline = time.monotonic() + 60
            while channel.queue_declare(queue, passive=True).method.consumer_count < len(processes):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{way}: the ingestors did not consume {queue}")
                connection.sleep(0.1)
            before = {p.pid: harness.process_cpu(p.pid) for p in processes}
            postgres = _postgres_cpu()
            start = time.perf_counter()
            persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
            for body in bodies:
                channel.basic_publish(exchange, publisher.BATCH_ROUTING_KEY, body, persistent)
            stored = 0
            deadline = time.monotonic() + 300
            while stored < count and time.monotonic() < deadline:
                time.sleep(0.05)
                row = db.execute(
                    "SELECT count(*) FROM lifecycle_event WHERE task_key LIKE %s", [prefix + "%"]
                ).fetchone()
                stored = row[0] if row else 0
            seconds = time.perf_counter() - start
            ingest_cpu = sum(harness.process_cpu(p.pid) - before[p.pid] for p in processes)
            return {
                "seconds": seconds,
                "ingest_cpu": ingest_cpu,
                "postgres_cpu": _postgres_cpu() - postgres,
            }
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()

    try:
        declare_topology(channel, namespace)
        order = list(WAYS)
        for r in range(rounds):
            for way in order[r % 2 :] + order[: r % 2]:
                prefix = f"bench-nodes-{uuid.uuid4().hex[:8]}-"
                try:
                    runs[way].append(one_round(way, prefix))
                finally:
                    found = harness.stored_and_cleared(db, prefix)
                if found != (count, count):
                    wrong[way] = found
    finally:
        db.close()
        for name in (queue, topology.dead_queue(namespace)):
            channel.queue_delete(name)
        channel.exchange_delete(exchange)
        connection.close()

    rate = {way: statistics.median(count / r["seconds"] for r in rs) for way, rs in runs.items()}
    cpu = {
        way: {
            part: statistics.median(r[part] / count * 1e6 for r in rs)
            for part in ("ingest_cpu", "postgres_cpu")
        }
        for way, rs in runs.items()
    }
    result = {"events": count, "rounds": rounds, "rate": rate, "cpu_us": cpu, "wrong": wrong}
    print(format_result(result), flush=True)
    return result


def format_result(r: dict[str, Any]) -> str:
    rate, cpu = r["rate"], r["cpu_us"]
    lines = [
        f"ingest on nodes: {r['events']:,} events in batches of up to 500, median of"
        f" {r['rounds']} rounds, competing `lifecycle ingest` processes"
    ]
    for way, n in WAYS.items():
        lines.append(
            f"  {way} ({n} ingestor{'s' if n > 1 else ''}): {rate[way]:9,.0f} events/s stored"
            f"  (CPU µs per event: ingestors {cpu[way]['ingest_cpu']:.1f},"
            f" PostgreSQL {cpu[way]['postgres_cpu']:.1f})"
        )
    lines.append(
        f"  two nodes / one: {rate['two nodes'] / rate['one node']:.2f}x"
        + (f"; LOST OR DOUBLED (rows, distinct uuids): {r['wrong']}" if r["wrong"] else "")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = harness.options("python -m bench.ingest_nodes", __doc__, add_arguments, argv)
    result = bench_ingest_nodes(options["events"], options["rounds"])
    return 1 if result["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
