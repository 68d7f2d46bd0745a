"""What several benchmarks share: Django set up and a benchmark's own options parsed, a
throwaway database, a process's CPU time, its threads and the processes it started, a
writer's pace, a child process stopped, the events a run stored counted and cleared."""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any


def options(
    prog: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """A benchmark run alone (``python -m bench.<name>``): Django set up, then its options."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    return vars(parser.parse_args(argv))


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A database of the benchmark's own, ``name``: created empty, dropped afterwards (its
    connections ended), whatever happened."""
    import psycopg
    from psycopg import sql

    from lifecycle.runtime.services import maintenance_conninfo

    with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def stored_and_cleared(db: Any, prefix: str) -> tuple[int, int]:
    """How many events of the tasks keyed ``prefix``… the store holds, and how many of them
    are distinct (by uuid); then deletes them, for the next round to count its own."""
    row = db.execute(
        "SELECT count(*), count(DISTINCT uuid) FROM lifecycle_event WHERE task_key LIKE %s",
        [prefix + "%"],
    ).fetchone()
    db.execute("DELETE FROM lifecycle_event WHERE task_key LIKE %s", [prefix + "%"])
    return (row[0], row[1]) if row else (0, 0)


def process_cpu(pid: int) -> float:
    """A process's CPU seconds so far (user and system), or NaN when it is not on this
    machine (a PostgreSQL elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> list[int]:
    """A process's thread ids (none once it has ended)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def descendants(root: int) -> list[int]:
    """Every process ``root`` started, and those started, and so on (``/proc``)."""
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        for tid in threads(pid):  # a child is its starting thread's
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as listed:
                    children = [int(c) for c in listed.read().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


class Affinities:
    """Processes placed on cores (``place``: every thread, an Erlang VM has dozens), the
    affinity each thread had first kept; ``restore`` gives each back what it had (``first``:
    those threads before the rest), and nothing is placed after it."""

    def __init__(self) -> None:
        self.saved: dict[int, set[int]] = {}  # thread id -> its affinity before the run
        self.restored = False
        self.lock = threading.Lock()  # a meter's thread may place processes too

    def place(self, pids: list[int], cpus: set[int]) -> None:
        with self.lock:
            if self.restored:
                return
            for pid in pids:
                for tid in threads(pid):
                    with suppress(OSError):
                        before = os.sched_getaffinity(tid)
                        self.saved.setdefault(tid, before)
                        os.sched_setaffinity(tid, cpus)

    def restore(self, first: list[int] | tuple[int, ...] = ()) -> bool:
        """Every thread moved back, ``first`` first; False if it was restored already."""
        with self.lock:
            if self.restored:
                return False
            self.restored = True
            for tid in sorted(self.saved, key=lambda t: t not in first):
                with suppress(OSError):
                    os.sched_setaffinity(tid, self.saved[tid])
            return True


def paced(rate: int, seconds: float, *, max_behind_ns: int | None = None) -> Iterator[int]:
    """0, 1, 2, ...: ``rate`` a second for ``seconds`` from the first, each when it is due.
    A caller that falls behind gets the next at once; one more than ``max_behind_ns``
    behind keeps the pace from now rather than bursting to catch up."""
    interval = 1_000_000_000 // rate
    due = time.monotonic_ns()
    end = due + int(seconds * 1e9)
    seq = 0
    while (now := time.monotonic_ns()) < end:
        if now < due:
            time.sleep((due - now) / 1e9)
        elif max_behind_ns is not None and now - due > max_behind_ns:
            due = now
        yield seq
        seq += 1
        due += interval


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
