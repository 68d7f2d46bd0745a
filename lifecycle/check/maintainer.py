"""The maintainer: keeps every task's stored findings current, and the event table pruned.

It follows the event table, whichever path stored the events (the ingestor, the
follower, the capture trigger, the probe): woken by the ``NOTIFY`` every insert sends,
or every ``poll`` seconds, it rechecks each task whose events moved since its last pass
(``findings.changed_tasks``) and keeps the answer in ``lifecycle_task_check``. Page views
and websockets only read those rows, so no page waits for the checker.

A task is rechecked at most once per ``max(min_interval, 10 × its last check's time)``
(``min_interval`` 50 ms: a short history is current moments after its last event);
a history that takes the checker 2 s is rechecked every 20 s while it grows. And all
checks together take at most a quarter of a core: a pass whose checks spent 1 s of this
process's CPU is followed by 3 s of rest (its waits for PostgreSQL count for nothing: they
were a third of a pass, and counting them made the rest, and so the stored findings'
delay, grow out of proportion under load), so under heavy load stored findings come later,
never wrong, and the checked application's machine keeps its cores. The tasks of a pass
are rechecked by the hundred (``findings.refresh``: a few queries for all of them). At
4,000 events a second across 500 tasks a second, stored findings trail each task's last
event by 0.6 s at p99 (``python -m bench.maintainer``). The first pass over an existing
table checks every task once, newest first, in chunks, and the home page says it is under
way.

Once an hour it also runs ``lifecycle.store.retention.maintain`` (partitions ahead, and pruning
when ``LIFECYCLE_RETENTION`` is set). A database that goes away is waited out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from django.db import InterfaceError, OperationalError, connection

from lifecycle import sql
from lifecycle.check import findings
from lifecycle.events import NOTIFY_CHANNEL
from lifecycle.runtime.database import conninfo, first_line
from lifecycle.store import eventlog, retention

logger = logging.getLogger(__name__)

MAINTAIN = sql.load("maintain")
CHUNK = 500  # tasks per transaction of the first pass
COST_FACTOR = 10.0  # a task waits this many times its last check's duration before another
SHARE = 0.25  # of one core, at most, for all checks together: a busy pass rests after it


@dataclass
class MaintainStats:
    passes: int = 0
    checked: int = 0  # task checks run
    deferred: int = 0  # checks put off because the task was checked moments ago
    errors: int = 0
    check_seconds: float = 0.0
    # Of it, this thread's CPU (not the waits for PostgreSQL): what ``share`` limits
    check_cpu_seconds: float = 0.0


GAP_PATIENCE = 120.0  # seconds an id below the newest may still commit (then: rolled back)
MAX_ROWS = 50_000  # rows a pass reads at most; the rest is the next pass's


@dataclass
class Position:
    """Which events a maintainer has looked at: every id up to ``high`` but ``gaps`` (ids
    handed out and not committed yet when it looked; a transaction commits them later, or
    rolls them back and they never come). A pass reads only the rows past ``high`` and
    those gaps, by primary key: an idle pass costs two index probes, not a scan."""

    high: int
    gaps: dict[int, float] = field(default_factory=dict)  # id -> when first missed
    forgotten: dict[int, None] = field(default_factory=dict)  # gaps given up, oldest first

    @classmethod
    def at(cls, high: int, lookback: int = 1000) -> Position:
        """A position after ``high``, the ids missing among the last ``lookback`` as gaps."""
        with connection.cursor() as cursor:
            cursor.execute(MAINTAIN["present"], {"low": high - lookback, "high": high})
            present = {i for (i,) in cursor.fetchall()}
        now = time.monotonic()
        gaps = {i: now for i in range(max(1, high - lookback + 1), high + 1) if i not in present}
        return cls(high, gaps)

    def moved(self) -> set[str]:
        """The tasks of the events that came since (and of gaps filled); moves ``high``."""
        with connection.cursor() as cursor:
            cursor.execute(
                MAINTAIN["moved"], {"high": self.high, "gaps": list(self.gaps), "limit": MAX_ROWS}
            )
            rows = cursor.fetchall()
        now = time.monotonic()
        ids = [i for i, _ in rows]
        for i in ids:
            self.gaps.pop(i, None)
        fresh = sorted(i for i in ids if i > self.high)
        if fresh:
            # Only the last ids can be in flight still (a huge jump is a rolled-back batch).
            expected = set(range(max(self.high + 1, fresh[-1] - MAX_ROWS), fresh[-1] + 1))
            for missing in expected.difference(fresh):
                self.gaps[missing] = now
            self.high = fresh[-1]
        for i, since in list(self.gaps.items()):
            if now - since > GAP_PATIENCE or len(self.gaps) > MAX_ROWS:
                del self.gaps[i]
                self.forgotten[i] = None  # its NOTIFY, if it ever commits, brings it back
        while len(self.forgotten) > MAX_ROWS:
            self.forgotten.pop(next(iter(self.forgotten)))
        return {key for _, key in rows}


@dataclass
class Maintainer:
    poll: float = 1.0
    min_interval: float = 0.05
    retention_every: float = 3600.0
    cost_factor: float = COST_FACTOR
    share: float = SHARE
    stats: MaintainStats = field(default_factory=MaintainStats)
    _stop: threading.Event = field(default_factory=threading.Event)
    _next_check: dict[str, float] = field(default_factory=dict)  # task -> monotonic time
    _pending: set[str] = field(default_factory=set)  # moved, not checked yet
    _next_retention: float = 0.0
    _position: Position | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self, until: Callable[[MaintainStats], bool] | None = None) -> MaintainStats:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    conninfo(application_name="lifecycle-maintain"),
                    autocommit=True,
                    connect_timeout=5,
                ) as listener:
                    listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    delay = 0.5
                    while not self._stop.is_set():
                        spent = self.stats.check_cpu_seconds
                        self.once()
                        if until is not None and until(self.stats):
                            return self.stats
                        # Many busy tasks: rest so that checks take at most ``share``.
                        spent = self.stats.check_cpu_seconds - spent
                        self._stop.wait(spent * (1 / self.share - 1))
                        # Wake on the first notification (taking a burst with it), or poll.
                        # Each names an event's id, at its commit: one that commits long
                        # after its id was taken is found by it, whatever the gaps forgot.
                        for note in listener.notifies(timeout=self.poll, stop_after=1):
                            self._noted(note.payload)
                        for note in listener.notifies(timeout=0.01):
                            self._noted(note.payload)
            except (psycopg.Error, OperationalError, InterfaceError) as exc:
                self.stats.errors += 1
                logger.warning(
                    "maintain: database unavailable (%s); retry in %.1fs", first_line(exc), delay
                )
                connection.close()
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            except Exception:  # what nothing above foresaw: logged, never the process's end
                self.stats.errors += 1
                logger.exception("maintain: a pass failed; the next in %.1fs", delay)
                connection.close()
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return self.stats

    def _noted(self, payload: str) -> None:
        """A NOTIFY's event id: a gap given up on that committed after all is read again."""
        position = self._position
        if position is not None and payload.isdigit() and int(payload) in position.forgotten:
            del position.forgotten[int(payload)]
            position.gaps[int(payload)] = time.monotonic()

    def once(self) -> None:
        """One pass: recheck what moved (and what was put off), then retention if due.

        A task leaves ``_pending`` only once its check is stored: a pass the database
        interrupts leaves its tasks for the next one."""
        # Django's connection is kept from pass to pass: close_old_connections() would open a
        # new one for each (CONN_MAX_AGE is 0), 5 ms of a pass. One that broke is closed
        # where its error is caught (run), or here if an error left it unusable.
        if connection.errors_occurred and not connection.is_usable():
            connection.close()
        with connection.cursor() as cursor:
            # A pass's queries are index scans of a few rows each; JIT compiling them, which
            # the planner asks for when its estimates are large (a big table, or one not
            # analyzed lately), cost 25 ms of each query.
            cursor.execute("SET jit = off")
        self.stats.passes += 1
        if self._position is None:
            changed, newest = findings.changed_tasks()  # since the stored cursor (a margin)
            if changed is None:  # the first pass ever: every task
                if not self._first_pass():
                    return  # stopped half-way: not done, and not recorded as done
            else:
                self._pending |= changed
            self._position = Position.at(newest)
        self._pending |= self._position.moved()
        if self._pending:
            self._check(self._pending)
        findings.passed(self._position.high)
        now = time.monotonic()
        if now >= self._next_retention:
            self._next_retention = now + self.retention_every
            self._retention()

    def _first_pass(self) -> bool:
        """Every task once, newest first, a chunk at a time (the table may be large); False
        when asked to stop before the end."""
        keys = [
            key for key, _ in sorted(eventlog.task_stats(None).items(), key=lambda kv: -kv[1][1])
        ]
        logger.info("maintain: first pass over %d tasks", len(keys))
        for start in range(0, len(keys), CHUNK):
            if self._stop.is_set():
                return False
            chunk = set(keys[start : start + CHUNK])
            self._pending |= chunk
            self._check(chunk, throttle=False)
        return True

    def _check(self, keys: set[str], *, throttle: bool = True) -> None:
        now = time.monotonic()
        due = {k for k in keys if not throttle or self._next_check.get(k, 0.0) <= now}
        self.stats.deferred += len(keys) - len(due)
        if not due:
            return
        started, cpu = time.perf_counter(), time.thread_time()
        timed = findings.refresh(due, timings=True)  # raises if the database went away
        self._pending -= due
        self.stats.check_seconds += time.perf_counter() - started
        self.stats.check_cpu_seconds += time.thread_time() - cpu
        for key, seconds in timed.items():
            self.stats.checked += 1
            self._next_check[key] = now + max(self.min_interval, self.cost_factor * seconds)
        if len(self._next_check) > 100_000:  # forget tasks long quiet
            self._next_check = {k: t for k, t in self._next_check.items() if t > now}

    def _retention(self) -> None:
        try:
            line = retention.maintain(touched=self._pending)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            logger.exception("maintain: retention failed; next try in an hour")
            return
        if line:
            logger.info("maintain: %s", line)
