"""Benchmark the follower: captured changes copied out of one watched database's outbox.

    python -m bench.follower [--changes 100000] [--rounds 3]

A watched database of its own (``<db>_bench_follow_<hex>``) with a table of 1,000 rows and
``capture install`` on it (the function generated for the table, as a superuser's install
gets it), whose outbox is filled with ``--changes`` changes (UPDATEs of every row, each
changing the status and two more columns, 1,000 changes a transaction). Then the follower's
``copy_outbox`` copies them into the event table until the outbox is empty, timed; and, in
the same run, the floor: a bare ``COPY (DELETE ... RETURNING ...) TO STDOUT`` of the same
rows piped into ``COPY lifecycle_event FROM STDIN``, a batch at a time, from this process,
with the outbox's own columns as the event (its changed values as the body: nothing made).
Rounds alternate the two, in a rotating order; medians. Each round must store every change
exactly once (by uuid) and leave the outbox empty, or the run fails.

Then one change at a time, as a quiet system's follower sees them (what a live page waits
for): ``--singles`` times (300), one row is updated and committed, and one ``copy_outbox``
call (or one floor batch) copies it, timed; the two alternate. Printed: the p50 and p99 of
that call against the floor's.

CPU per change is read from ``/proc`` for this process and for the two PostgreSQL backends
(the watched database's and the store's), where PostgreSQL runs on this machine.

Everything it creates is removed at the end: the database, the capture's role, the events.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench import harness

TARGET_RATE = 20_000.0  # captured changes a second, copied out of one watched database
ROWS = 1_000  # rows of the watched table; each UPDATE of all of them is 1,000 changes
STATUSES = ("RUNNING", "COMPLETED", "FAILED", "PENDING")

FLOOR_COPY_OUT = """
COPY (WITH moved AS (
          DELETE FROM lifecycle_capture.outbox
           WHERE id IN (SELECT id FROM lifecycle_capture.outbox ORDER BY id LIMIT {limit})
       RETURNING id, uuid, task_key, kind, status, at, txid, changed_values)
      SELECT uuid, task_key, 'db', kind, status, at, txid, changed_values
        FROM moved ORDER BY id) TO STDOUT
"""
FLOOR_COPY_IN = (
    "COPY lifecycle_event (uuid, task_key, source, kind, status, at, txid, body) FROM STDIN"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--changes", type=int, default=100_000, help="changes in the outbox")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the follower and floor")
    parser.add_argument("--singles", type=int, default=300, help="changes copied one at a time")


def bench_follower(changes: int = 100_000, rounds: int = 3, singles: int = 300) -> dict[str, Any]:
    """Fill the outbox, copy it out, ``rounds`` times for the follower and for the floor."""
    import psycopg

    from lifecycle.capture import outbox
    from lifecycle.capture.follower import FollowStats, copy_outbox
    from lifecycle.runtime.database import conninfo

    store_info = conninfo(application_name="lifecycle-bench")
    hexa = uuid.uuid4().hex[:8]
    with psycopg.connect(store_info) as probe:
        store_name = probe.info.dbname
    database = f"{store_name}_bench_follow_{hexa}"[:63]
    watched_info = conninfo(dbname=database, application_name="lifecycle-bench")
    prefix = f"bench-follow-{hexa}:"
    runs: dict[str, list[dict[str, float]]] = {"follower": [], "floor": []}
    counts: dict[str, tuple[int, int, int]] = {}

    with harness.scratch_database(database):
        store = psycopg.connect(store_info, autocommit=True)
        try:
            with psycopg.connect(watched_info, autocommit=True) as conn:
                conn.execute(
                    "CREATE TABLE public.jobs (id bigint PRIMARY KEY, state text NOT NULL,"
                    " attempts int NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL,"
                    " note text)"
                )
                conn.execute(
                    "INSERT INTO public.jobs (id, state, updated_at, note)"
                    " SELECT g, 'PENDING', now(), 'job ' || g FROM generate_series(1, %s) g",
                    [ROWS],
                )
            outbox.install(watched_info, "public.jobs", "id", "state", key_prefix=prefix)

            def counted() -> tuple[int, int, int]:
                row = store.execute(
                    "SELECT count(*), count(DISTINCT uuid) FROM lifecycle_event"
                    " WHERE task_key LIKE %s",
                    [prefix + "%"],
                ).fetchone()
                with psycopg.connect(watched_info) as conn:
                    left = conn.execute(outbox.OUTBOX["pending"]).fetchone()
                store.execute("DELETE FROM lifecycle_event WHERE task_key LIKE %s", [prefix + "%"])
                return (row[0] if row else -1), (row[1] if row else -1), (left[0] if left else -1)

            def follower(watched: Any, once: bool = False) -> None:
                stats = FollowStats()
                while copy_outbox(watched, store, f"bench-{hexa}", stats=stats) and not once:
                    pass

            def floor(watched: Any, once: bool = False) -> None:
                while True:
                    with watched.transaction(), store.transaction():
                        with (
                            watched.cursor().copy(FLOOR_COPY_OUT.format(limit=1000)) as out,
                            store.cursor().copy(FLOOR_COPY_IN) as into,
                        ):
                            moved = 0
                            for chunk in out:
                                into.write(chunk)
                                moved += 1
                    if not moved or once:
                        return

            ways: dict[str, Callable[..., None]] = {"follower": follower, "floor": floor}
            order = list(ways)
            for r in range(rounds):
                for name in order[r % 2 :] + order[: r % 2]:
                    _fill(watched_info, changes)
                    runs[name].append(_timed(ways[name], watched_info, store))
                    counts[name] = counted()
                    if counts[name] != (changes, changes, 0):
                        break
            single = _singles(watched_info, store, ways, singles)
            counts["one at a time"] = counted()
            if counts["one at a time"][:2] == (singles * 2, singles * 2):
                counts["one at a time"] = (singles, singles, 0)  # both ways' copies
        finally:
            store.execute("DELETE FROM lifecycle_event WHERE task_key LIKE %s", [prefix + "%"])
            store.close()
            outbox.remove_all(watched_info)  # drops the capture's role too

    rate = {n: statistics.median(changes / r["seconds"] for r in rs) for n, rs in runs.items()}
    cpu = {
        n: {k: statistics.median(r[k] / changes * 1e6 for r in rs) for k in CPU_PARTS}
        for n, rs in runs.items()
    }
    wrong = {
        n: c
        for n, c in counts.items()
        if c != ((singles, singles, 0) if n == "one at a time" else (changes, changes, 0))
    }
    met = rate["follower"] >= TARGET_RATE and not wrong
    result = {
        "changes": changes,
        "rounds": rounds,
        "rate": rate,
        "cpu_us": cpu,
        "single_ms": single,
        "wrong": wrong,
        "met": met,
    }
    print(format_follower(result), flush=True)
    return result


CPU_PARTS = ("this process", "watched backend", "store backend")


def format_follower(r: dict[str, Any]) -> str:
    rate, cpu = r["rate"], r["cpu_us"]

    def costs(name: str) -> str:
        return ", ".join(f"{part} {cpu[name][part]:.1f}" for part in CPU_PARTS)

    lines = [
        f"follower: {r['changes']:,} captured changes in one watched database's outbox,"
        f" median of {r['rounds']} rounds",
        f"  floor, DELETE ... RETURNING piped by COPY: {rate['floor']:9,.0f} changes/s"
        f"  (CPU µs per change: {costs('floor')})",
        f"  the follower, copy_outbox:                 {rate['follower']:9,.0f} changes/s"
        f"  ({rate['follower'] / rate['floor']:.0%} of the floor;"
        f" CPU µs per change: {costs('follower')})",
        f"  one change at a time ({r['single_ms']['count']} each), p50 / p99 of a copy:"
        f" the follower {r['single_ms']['follower'][0]:.2f} / {r['single_ms']['follower'][1]:.2f}"
        f" ms, the floor {r['single_ms']['floor'][0]:.2f} / {r['single_ms']['floor'][1]:.2f} ms",
        f"  target: ≥ {TARGET_RATE:,.0f}/s: {'met' if r['met'] else 'MISSED'}"
        + (
            f"; WRONG (events, distinct uuids, left in the outbox): {r['wrong']}"
            if r["wrong"]
            else ""
        ),
    ]
    return "\n".join(lines)


def _singles(
    watched_info: str, store: Any, ways: dict[str, Callable[..., None]], count: int
) -> dict[str, Any]:
    """One change committed, then copied by one call of each way, ``count`` times: each
    call's p50 and p99 in ms."""
    import psycopg

    times: dict[str, list[float]] = {name: [] for name in ways}
    with (
        psycopg.connect(watched_info, autocommit=True) as writer,
        psycopg.connect(watched_info, autocommit=True) as watched,
    ):
        for i in range(count * len(ways)):
            name = list(ways)[i % len(ways)]
            writer.execute(
                "UPDATE public.jobs SET state = %s, updated_at = clock_timestamp() WHERE id = %s",
                [STATUSES[i % len(STATUSES)], i % ROWS + 1],
            )
            start = time.perf_counter()
            ways[name](watched, True)
            times[name].append((time.perf_counter() - start) * 1000)
    result: dict[str, Any] = {"count": count}
    for name, spent in times.items():
        spent.sort()
        result[name] = (
            statistics.median(spent),
            spent[min(len(spent) - 1, int(len(spent) * 0.99))],
        )
    return result


def _fill(watched_info: str, changes: int) -> None:
    """``changes`` changes in the outbox: UPDATEs of the rows, 1,000 changes a transaction."""
    import psycopg

    with psycopg.connect(watched_info, autocommit=True) as conn:
        done = 0
        while done < changes:
            rows = min(ROWS, changes - done)
            status = STATUSES[(done // ROWS) % len(STATUSES)]
            conn.execute(
                "UPDATE public.jobs SET state = %s, attempts = attempts + 1,"
                " updated_at = clock_timestamp() WHERE id <= %s",
                [status, rows],
            )
            done += rows


def _timed(way: Callable[..., None], watched_info: str, store: Any) -> dict[str, float]:
    import psycopg

    with psycopg.connect(watched_info, autocommit=True) as watched:
        backends = {
            "watched backend": watched.info.backend_pid,
            "store backend": store.info.backend_pid,
        }
        before = {part: harness.process_cpu(pid) for part, pid in backends.items()}
        cpu, start = time.process_time(), time.perf_counter()
        way(watched)
        result = {"seconds": time.perf_counter() - start, "this process": time.process_time() - cpu}
        for part, pid in backends.items():
            result[part] = harness.process_cpu(pid) - before[part]
    return result


def main(argv: list[str] | None = None) -> int:
    options = harness.options("python -m bench.follower", __doc__, add_arguments, argv)
    result = bench_follower(options["changes"], options["rounds"], options["singles"])
    return 1 if result["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
