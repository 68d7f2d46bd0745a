"""Benchmark the maintainer: how far each task's stored findings trail its last event.

    python -m bench.maintainer [--seconds 30] [--tasks 500]

A database of its own (``<db>_bench_maintain_<hex>``, migrated), with the real maintainer
process following it (``manage.py lifecycle maintain``). This process writes tasks' events
into its event table as the ingestor and the follower would: every 10 ms a transaction
with the events due, each task 8 events over 0.4 s (enqueue, the row's insert, start, two
updates, ack, two API reads with the row version they returned). First a trickle (20 tasks
a second for 5 s: the baseline, the lag of a maintainer with nothing else to do), then
``--tasks`` tasks a second (500: 4,000 events a second) for ``--seconds``. Once the writing
ends it waits up to 60 s for every task's check to cover its last event.

A task's lag is the time from its last event's insert (``received_at``) to the check that
covers it (``lifecycle_task_check.checked_at``, same clock): p50, p99 and the largest, per
phase; a task whose check never covered its last event counts as missed (an infinite lag).
The maintainer's CPU share comes from ``/proc``.

Everything it creates is removed at the end: the database and the process.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import harness
from lifecycle.history import XID_WRAP

TARGET_P99_S = 2.0  # seconds a task's stored findings may trail its last event, at p99
TICK = 0.01  # seconds between the writer's transactions
LIFETIME = 0.4  # seconds from a task's first event to its last
ROOT = Path(__file__).resolve().parents[1]

COPY_EVENTS = (
    "COPY lifecycle_event (uuid, task_key, source, kind, status, at, txid, body) FROM STDIN"
)
ALL = frozenset({"db", "broker", "api", "log", "probe"})  # sources: the capture's too


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the load lasts")
    parser.add_argument("--tasks", type=int, default=500, help="tasks a second under load")
    parser.add_argument(
        "--profile", metavar="PATH", help="run the maintainer under cProfile, its stats to PATH"
    )


def bench_maintainer(
    seconds: float = 30.0, tasks: int = 500, profile: str | None = None
) -> dict[str, Any]:
    import psycopg
    from django.conf import settings

    from lifecycle.runtime.database import conninfo

    db = settings.DATABASES["default"]
    database = f"{db['NAME']}_bench_maintain_{uuid.uuid4().hex[:8]}"[:63]
    credentials = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    url = f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{database}"
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    maintainer: subprocess.Popen[bytes] | None = None
    phases: dict[str, tuple[float, float]] = {}  # name -> (tasks a second, seconds)
    with harness.scratch_database(database):
        try:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
            )
            profiled = ["-m", "cProfile", "-o", profile] if profile else []
            maintainer = subprocess.Popen(
                [sys.executable, *profiled, "manage.py", "lifecycle", "maintain"], cwd=ROOT, env=env
            )
            with psycopg.connect(
                conninfo(dbname=database, application_name="lifecycle-bench"), autocommit=True
            ) as conn:
                time.sleep(2.0)  # its first pass, over an empty table
                writer = _Writer(conn)
                cpu: dict[str, float] = {}
                for name, rate, length in (("trickle", 20.0, 5.0), ("load", float(tasks), seconds)):
                    phases[name] = (rate, length)
                    before, started = harness.process_cpu(maintainer.pid), time.monotonic()
                    writer.run(name, rate, length)
                    spent = harness.process_cpu(maintainer.pid) - before
                    cpu[name] = spent / (time.monotonic() - started)
                deadline = time.monotonic() + 60
                while _behind(conn) and time.monotonic() < deadline:
                    time.sleep(0.5)
                lags = _lags(conn)
        finally:
            if maintainer is not None:
                harness.stop(maintainer, 15)

    result: dict[str, Any] = {"phases": {}}
    for name, (rate, length) in phases.items():
        found = [lag for phase, lag, _ in lags if phase == name]
        known = sorted(lag for lag in found if lag is not None)
        missed = len(found) - len(known)
        ordered = known + [math.inf] * missed
        # The p99 of each 5 s of the phase: a lag that grows is a maintainer falling behind
        times = [when for phase, _, when in lags if phase == name]
        start = min(times, default=0.0)
        windows: dict[int, list[float]] = {}
        for phase, lag, when in lags:
            if phase == name:
                windows.setdefault(int((when - start) // 5), []).append(
                    math.inf if lag is None else lag
                )
        result["phases"][name] = {
            "p99_by_5s": [_quantile(sorted(w), 0.99) for _, w in sorted(windows.items())],
            "rate": rate,
            "seconds": length,
            "tasks": len(found),
            "missed": missed,
            "p50": _quantile(ordered, 0.50),
            "p99": _quantile(ordered, 0.99),
            "max": ordered[-1] if ordered else math.nan,
            "cpu": cpu[name],
        }
    load = result["phases"]["load"]
    result["met"] = load["p99"] <= TARGET_P99_S
    print(format_maintainer(result), flush=True)
    return result


def format_maintainer(r: dict[str, Any]) -> str:
    lines = ["maintainer: how far a task's stored findings trail its last event"]
    for name, p in r["phases"].items():
        lines.append(
            f"  {name:8s} {p['rate']:4.0f} tasks/s ({p['rate'] * 8:5,.0f} events/s) for"
            f" {p['seconds']:.0f} s: p50 {p['p50']:6.2f} s, p99 {p['p99']:6.2f} s,"
            f" largest {p['max']:6.2f} s; {p['tasks']:,} tasks, {p['missed']} never current;"
            f" the maintainer {p['cpu']:.0%} of a core"
        )
        lines.append(
            "           p99 of each 5 s: " + ", ".join(f"{x:.2f}" for x in p["p99_by_5s"]) + " s"
        )
    load = r["phases"]["load"]
    lines.append(
        f"  target: p99 ≤ {TARGET_P99_S:g} s under load: {'met' if r['met'] else 'MISSED'}"
        f" ({load['p99']:.2f} s)"
    )
    return "\n".join(lines)


class _Writer:
    """Tasks' events into the event table on a fixed schedule, a transaction every TICK."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.txids = itertools.count(1_000_000)
        self.run_id = uuid.uuid4().hex[:8]

    def run(self, phase: str, rate: float, seconds: float) -> None:
        from lifecycle import events

        due: list[tuple[float, dict[str, Any]]] = []  # (when, message), in time order
        started = time.monotonic()
        made = 0
        tick = 0
        while True:
            now = time.monotonic() - started
            while made < rate * min(now, seconds):
                begins = time.monotonic()
                due.extend((begins + offset, m) for offset, m in self._task(f"{phase}-{made:06d}"))
                made += 1
            due.sort(key=lambda pair: pair[0])
            ready = [m for at, m in due if at <= time.monotonic()]
            if ready:
                del due[: len(ready)]
                at = datetime.now(UTC).isoformat()
                rows = [events.validate({**m, "at": at}, ALL).as_row() for m in ready]
                with self.conn.transaction(), self.conn.cursor() as cur:
                    with cur.copy(COPY_EVENTS) as copy:
                        for row in rows:
                            copy.write_row(row)
            if now >= seconds and not due:
                return
            tick += 1
            time.sleep(max(0.0, started + tick * TICK - time.monotonic()))

    def _task(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        """One task's events, each with when it is due (seconds after its first)."""
        from lifecycle.events import make_message

        key = f"bench-maintain-{self.run_id}-{name}"
        message_id = str(uuid.uuid4())
        t1, t2, t3 = next(self.txids), next(self.txids), next(self.txids)
        steps: list[tuple[float, str, str, str | None, int | None, dict[str, Any]]] = [
            (0.00, "broker", "enqueue", None, None, {"message_id": message_id, "attempt": 1}),
            (0.01, "db", "insert", "PENDING", t1, _commit(None, "PENDING")),
            (0.05, "broker", "start", None, None, {"message_id": message_id, "attempt": 1}),
            (0.10, "db", "update", "RUNNING", t2, _commit("PENDING", "RUNNING")),
            (0.15, "api", "read", "RUNNING", None, {"xmin": t2 % XID_WRAP, "client": "c1"}),
            (0.30, "db", "update", "COMPLETED", t3, _commit("RUNNING", "COMPLETED")),
            (0.35, "broker", "ack", None, None, {"message_id": message_id, "attempt": 1}),
            (LIFETIME, "api", "read", "COMPLETED", None, {"xmin": t3 % XID_WRAP, "client": "c1"}),
        ]
        return [
            (
                offset,
                make_message(
                    source=source,
                    kind=kind,
                    task=key,
                    status=status,
                    txid=txid,
                    body=body,
                ),
            )
            for offset, source, kind, status, txid, body in steps
        ]


def _commit(old: str | None, new: str) -> dict[str, Any]:
    return {
        "table": "jobs",
        "op": "INSERT" if old is None else "UPDATE",
        "old_status": old,
        "new_status": new,
        "changed": ["status"],
        "values": {"status": new},
        "application_name": "bench-worker",
        "pid": 1,
    }


LAGS = """
SELECT split_part(e.task_key, '-', 4), c.last_event_id = e.last_id,
       extract(epoch FROM c.checked_at - e.last_received), extract(epoch FROM e.last_received)
  FROM (SELECT task_key, max(id) AS last_id, max(received_at) AS last_received
          FROM lifecycle_event GROUP BY task_key) AS e
  LEFT JOIN lifecycle_task_check c USING (task_key)
"""


def _lags(conn: Any) -> list[tuple[str, float | None, float]]:
    """Each task's phase, lag (None: its check is not current) and last event's time."""
    return [
        (phase, float(lag) if current else None, float(when))
        for phase, current, lag, when in conn.execute(LAGS).fetchall()
    ]


def _behind(conn: Any) -> bool:
    return any(lag is None for _, lag, _ in _lags(conn))


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def main(argv: list[str] | None = None) -> int:
    options = harness.options("python -m bench.maintainer", __doc__, add_arguments, argv)
    bench_maintainer(options["seconds"], options["tasks"], options["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
