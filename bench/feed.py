"""Measure the live feed's latency (commit to callback) beside a bare psycopg LISTEN's.

A writer thread commits one event per statement at a steady rate and notes when each
commit returned (``time.perf_counter``, one clock for the whole process). In the same run
the LiveFeed and a bare ``conn.notifies()`` consumer note when each event reached them. A
listener can hear of a commit a few microseconds before the writer's reply arrives, so the
smallest figures may be slightly negative.

    DATABASE_URL=postgres://... python -m bench.feed --seconds 10 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import Counter
from typing import Any

import psycopg

from lifecycle.events import NOTIFY_CHANNEL, EventRecord
from lifecycle.feed.listener import LiveFeed, dsn_from_settings

INSERT_SQL = """
INSERT INTO lifecycle_event (task_key, source, kind) VALUES (%s, 'probe', 'read') RETURNING id
"""


def bench_feed(seconds: float, rate: int) -> dict[str, Any]:
    """Commit ``rate`` events a second for ``seconds``; return and print the latencies."""
    result = asyncio.run(_bench(dsn_from_settings("lifecycle-bench"), seconds, rate))
    print(format_result(result))
    return result


async def _bench(dsn: str, seconds: float, rate: int) -> dict[str, Any]:
    task = f"bench-feed:{uuid.uuid4()}"
    committed: dict[int, float] = {}
    heard: dict[str, dict[int, float]] = {"raw LISTEN": {}, "LiveFeed": {}}
    feed_deliveries: Counter[int] = Counter()

    async def on_events(events: list[EventRecord]) -> None:
        now = time.perf_counter()
        for event in events:
            if event.task_key == task:
                feed_deliveries[event.id] += 1
                heard["LiveFeed"].setdefault(event.id, now)

    raw = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await raw.execute(f"LISTEN {NOTIFY_CHANNEL}")

    async def listen_raw() -> None:
        async for notify in raw.notifies():
            heard["raw LISTEN"].setdefault(int(notify.payload), time.perf_counter())

    feed = LiveFeed(dsn, on_events)
    tasks = [asyncio.create_task(feed.run()), asyncio.create_task(listen_raw())]
    try:
        await asyncio.wait_for(feed.connected.wait(), 10)
        started = time.perf_counter()
        await asyncio.to_thread(_write, dsn, task, seconds, rate, committed)
        elapsed = time.perf_counter() - started
        deadline = time.perf_counter() + 5
        while time.perf_counter() < deadline and any(
            len(seen.keys() & committed.keys()) < len(committed) for seen in heard.values()
        ):
            await asyncio.sleep(0.01)
    finally:
        await feed.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await raw.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM lifecycle_event WHERE task_key = %s", (task,))

    return {
        "seconds": seconds,
        "rate": rate,
        "commits": len(committed),
        "achieved_rate": len(committed) / elapsed if elapsed else 0.0,
        "listeners": {name: _latencies(committed, seen) for name, seen in heard.items()},
        "feed_duplicates": sum(n - 1 for n in feed_deliveries.values() if n > 1),
        "feed_stats": feed.stats(),
    }


def _write(dsn: str, task: str, seconds: float, rate: int, committed: dict[int, float]) -> None:
    interval = 1.0 / rate
    with psycopg.connect(dsn, autocommit=True) as conn:
        due = time.perf_counter()
        end = due + seconds
        while (now := time.perf_counter()) < end:
            if now < due:
                time.sleep(due - now)
            row = conn.execute(INSERT_SQL, (task,)).fetchone()
            assert row is not None
            committed[row[0]] = time.perf_counter()
            due += interval


def _latencies(committed: dict[int, float], seen: dict[int, float]) -> dict[str, float]:
    ms = sorted((seen[i] - at) * 1000 for i, at in committed.items() if i in seen)
    if not ms:
        return {"received": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    return {
        "received": len(ms),
        "p50_ms": ms[len(ms) // 2],
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max_ms": ms[-1],
    }


def format_result(result: dict[str, Any]) -> str:
    lines = [
        f"{result['commits']} commits in {result['seconds']:g} s "
        f"({result['rate']}/s asked, {result['achieved_rate']:.0f}/s achieved)",
        f"{'commit -> listener':<20}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'received':>12}",
    ]
    for name, figures in result["listeners"].items():
        lines.append(
            f"{name:<20}{figures['p50_ms']:>9.3f}{figures['p99_ms']:>9.3f}"
            f"{figures['max_ms']:>9.3f}{figures['received']:>7}/{result['commits']}"
        )
    stats = result["feed_stats"]
    lines.append(
        f"LiveFeed: {stats['fetches']} fetches for {stats['notifies']} notifications, "
        f"{result['feed_duplicates']} duplicates, {stats['reconnects']} reconnects"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to write")
    parser.add_argument("--rate", type=int, default=200, help="commits per second")


def handle(command: Any, options: dict[str, Any]) -> int:
    result = bench_feed(options["seconds"], options["rate"])
    lost = any(f["received"] < result["commits"] for f in result["listeners"].values())
    return 1 if lost or result["feed_duplicates"] else 0


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    django.setup()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(handle(None, vars(parser.parse_args())))
