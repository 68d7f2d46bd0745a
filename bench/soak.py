"""Soak: a whole stack under steady load for minutes, and each process's memory over time.

It starts ``lifecycle up`` on a database and namespace of its own (``lifecycle.scenarios.chaos``'s
stack, with no fault), then for ``--soak-minutes``:

- commits ``--soak-rate`` UPDATEs a second to 50 ``lab_task`` rows, 50 new ones every
  minute, so that each history stays a minute long and the load is steady (the capture
  trigger, the live feed, the maintainer);
- publishes as many ``api.read`` events through the client's publisher (the ingestor);
- starts a ``succeeds`` run through the JSON API every 5 s (the web process's probe, the
  lab API, the worker);
- renders the task page of the busiest task and the home page every 5 s.

Every 10 s it samples each child's resident memory (a process with children, Dramatiq's,
counts with them). The baseline is each process's RSS once warm (after the first minute,
or a fifth of the run if shorter); the target is that none grows more than 10 % past it by
the end. It also reports the events stored, so a loss would show.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import uuid
from typing import Any

WARM_FRACTION = 0.2
TASKS = 50  # tasks written at a time
ROTATE_EVERY = 60.0  # seconds before the writer moves to 50 new tasks
TARGET_GROWTH = 0.10


def rss_kib(pid: int) -> int:
    """Resident memory of a process and of every process in its group (its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pid:
                continue
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return total


def bench_soak(minutes: float, rate: int) -> dict[str, Any]:
    import psycopg
    from django.conf import settings

    from lifecycle.client.messages import make_message
    from lifecycle.client.publisher import Publisher
    from lifecycle.runtime.database import conninfo
    from lifecycle.scenarios.chaos import chaos_stack

    db = settings.DATABASES["default"]
    where: dict[str, Any] = {
        "database": f"{db['NAME']}_soak"[:63],
        "namespace": f"{settings.LIFECYCLE_NAMESPACE}-soak",
        "proxied": False,
    }
    seconds = minutes * 60
    samples: list[tuple[float, dict[str, int]]] = []
    with chaos_stack(log=lambda line: None, **where) as stack:
        print(f"soak: stack on {stack.base_url}, database {stack.database}", flush=True)
        keys: list[str] = []  # every task written, for the count at the end
        current: list[list[str]] = [[]]  # the 50 tasks written now (a new 50 each minute)

        def new_tasks(conn: Any) -> None:
            batch = [str(uuid.uuid4()) for _ in range(TASKS)]
            for key in batch:
                conn.execute(
                    "INSERT INTO lab_task (id, config, status, error, executions, created_at,"
                    " updated_at) VALUES (%s, '{}', 'PENDING', '', 0, now(), now())",
                    [key],
                )
            keys.extend(batch)
            current[0] = batch

        publisher = Publisher(url=stack.amqp_url, namespace=stack.namespace)
        stop = threading.Event()
        commits = [0]
        published = [0]

        def writer() -> None:
            with psycopg.connect(
                conninfo(dbname=stack.database, application_name="soak-writer"), autocommit=True
            ) as conn:
                n, start = 0, time.monotonic()
                new_tasks(conn)
                rotated = start
                while not stop.is_set():
                    if time.monotonic() - rotated >= ROTATE_EVERY:
                        new_tasks(conn)  # steady state: histories stay a minute long
                        rotated = time.monotonic()
                    batch = current[0]
                    key = batch[n % len(batch)]
                    status = ("RUNNING", "PENDING")[n // len(batch) % 2]
                    conn.execute(
                        "UPDATE lab_task SET status = %s, executions = executions + 1,"
                        " updated_at = now() WHERE id = %s",
                        [status, key],
                    )
                    publisher.publish(
                        make_message(
                            source="api",
                            kind="read",
                            task=key,
                            status=status,
                            body={"client": "soak", "path": f"/lab/api/tasks/{key}"},
                        )
                    )
                    n += 1
                    commits[0], published[0] = n, n
                    delay = start + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)

        def visitor() -> None:
            headers = {"Authorization": f"Bearer {stack.token}"}
            while not stop.wait(5.0):
                stack.start_run("succeeds")
                busy = current[0][0] if current[0] else ""
                for path in (f"/tasks/{busy}", "/"):
                    request = urllib.request.Request(stack.base_url + path, headers=headers)
                    try:
                        with urllib.request.urlopen(request, timeout=30) as response:
                            response.read()
                    except OSError:
                        pass

        threads = [
            threading.Thread(target=writer, daemon=True),
            threading.Thread(target=visitor, daemon=True),
        ]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        names = [n for n in ("web", "worker", "ingest", "follow", "maintain") if n in stack.pids]
        while (elapsed := time.monotonic() - began) < seconds:
            samples.append((elapsed, {n: rss_kib(stack.pids[n]) for n in names}))
            if len(samples) % 6 == 1:
                line = ", ".join(f"{n} {kib / 1024:.0f} MiB" for n, kib in samples[-1][1].items())
                print(f"soak: {elapsed:4.0f}s, {commits[0]} commits: {line}", flush=True)
            time.sleep(min(10.0, max(0.0, seconds - elapsed)))
        samples.append((time.monotonic() - began, {n: rss_kib(stack.pids[n]) for n in names}))
        stop.set()
        for thread in threads:
            thread.join(30)
        publisher.flush(30)
        time.sleep(5)
        with stack.direct() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE source = 'db'),"
                " count(*) FILTER (WHERE source = 'api' AND body->>'client' = 'soak')"
                " FROM lifecycle_event WHERE task_key = ANY(%s)",
                [keys],
            ).fetchone()
        db_events, api_events = row if row else (0, 0)
        db_events -= len(keys)  # the inserts of the tasks themselves
        publisher.close(5)
    warm_at = min(60.0, seconds * WARM_FRACTION)
    warm = next(s for t, s in samples if t >= warm_at)
    end = samples[-1][1]
    growth = {n: (end[n] - warm[n]) / warm[n] if warm[n] else 0.0 for n in end}
    return {
        "minutes": minutes,
        "rate": rate,
        "commits": commits[0],
        "published": published[0],
        "db_events": db_events,
        "api_events": api_events,
        "warm_at": warm_at,
        "warm": warm,
        "end": end,
        "peak": {n: max(s[n] for _, s in samples) for n in end},
        "growth": growth,
    }


def format_soak(r: dict[str, Any]) -> str:
    lines = [
        f"soak: {r['minutes']:g} min at {r['rate']} commits/s: {r['commits']} commits "
        f"({r['db_events']} captured), {r['published']} API reads published "
        f"({r['api_events']} stored)",
        f"  {'process':<10}{'warm MiB':>10}{'end MiB':>10}{'peak MiB':>10}{'growth':>9}",
    ]
    for name, growth in r["growth"].items():
        lines.append(
            f"  {name:<10}{r['warm'][name] / 1024:>10.1f}{r['end'][name] / 1024:>10.1f}"
            f"{r['peak'][name] / 1024:>10.1f}{growth * 100:>8.1f}%"
        )
    lines.append(f"  (warm: the RSS at {r['warm_at']:.0f} s; target: growth ≤ 10 % by the end)")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - python -m bench --only soak is the way
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    print(json.dumps(bench_soak(1, 100), indent=2, default=str))
