"""How the lab API reads a task: correctly, or through one of the three read-path bugs.

Every path returns the row's ``xmin`` (the version it read) and the reading transaction's
snapshot, which is what lets the checker tell a cached object from an old snapshot.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from django.db import connection

from lifecycle import sql
from lifecycle.lab.models import Task
from lifecycle.runtime.database import conninfo

READS = sql.read(Path(__file__).with_name("reads.sql"))


@dataclass(frozen=True)
class TaskRead:
    task: dict[str, Any]
    xmin: int
    snapshot: str
    path: str  # "fresh", "cached", "snapshot" or "replica": how this read was served
    standby: bool | None = None  # served by a hot standby (None: not asked)
    replayed_at: datetime | None = None  # how far the standby's replay had come


def _row_to_json(row: tuple[Any, ...]) -> dict[str, Any]:
    task = Task(
        id=row[0],
        config=row[1],
        status=row[2],
        error=row[3],
        output=row[4],
        executions=row[5],
        created_at=row[6],
        updated_at=row[7],
        started_at=row[8],
        finished_at=row[9],
    )
    return task.as_json()


def _fresh(task_id: str) -> tuple[dict[str, Any], int, str] | None:
    with connection.cursor() as cursor:
        cursor.execute(READS["read_task"], [task_id])
        row = cursor.fetchone()
    if row is None:
        return None
    # Django's cursor hands jsonb back as text (config, output).
    config, output = (json.loads(v) if isinstance(v, str) else v for v in (row[1], row[4]))
    return _row_to_json((row[0], config, row[2], row[3], output, *row[5:])), row[10], row[11]


def _current_snapshot() -> str:
    with connection.cursor() as cursor:
        cursor.execute(READS["current_snapshot"])
        return cursor.fetchone()[0]


class _CachedReads:
    """BUG cached_read: a per-process cache of task objects that is never refreshed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[dict[str, Any], int]] = {}

    def get(self, task_id: str) -> tuple[dict[str, Any], int] | None:
        with self._lock:
            return self._objects.get(task_id)

    def put(self, task_id: str, task: dict[str, Any], xmin: int) -> None:
        with self._lock:
            if len(self._objects) > 10_000:
                self._objects.clear()
            self._objects[task_id] = (task, xmin)


class _SnapshotReads:
    """BUG snapshot_read: one REPEATABLE READ transaction per task, kept open while polled."""

    MAX_AGE = 60.0
    MAX_OPEN = 20

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[psycopg.Connection[Any], float]] = {}

    def read(
        self, task_id: str, dsn: str, *, start: bool
    ) -> tuple[dict[str, Any], int, str] | None:
        with self._lock:
            self._expire()
            for _ in range(2):  # a connection the server ended (a restart) is opened again
                entry = self._open.get(task_id)
                if entry is None:
                    if not start:
                        return None
                    conn = psycopg.connect(dsn, application_name="lab-api-snapshot")
                    conn.execute(READS["begin_snapshot"])
                    entry = (conn, time.monotonic())
                    self._open[task_id] = entry
                try:
                    row = entry[0].execute(READS["read_task"], [task_id]).fetchone()
                    break
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    self._open.pop(task_id, None)
                    entry[0].close()
            else:
                raise psycopg.OperationalError("the snapshot's connection was lost twice")
        if row is None:
            return None
        return _row_to_json(row), row[10], row[11]

    def close_all(self) -> None:
        """End every kept snapshot (a test's cleanup: an open one blocks a TRUNCATE)."""
        with self._lock:
            entries, self._open = list(self._open.values()), {}
        for conn, _ in entries:
            conn.close()

    def has(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._open

    def _expire(self) -> None:
        now = time.monotonic()
        stale = [k for k, (_, t) in self._open.items() if now - t > self.MAX_AGE]
        while len(self._open) - len(stale) >= self.MAX_OPEN:
            oldest = min((k for k in self._open if k not in stale), key=lambda k: self._open[k][1])
            stale.append(oldest)
        for key in stale:
            conn, _ = self._open.pop(key)
            conn.close()


class _ReplicaReads:
    """BUG replica_read: reads on a hot standby (LAB_REPLICA_URL), one connection a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def read(self, task_id: str, url: str) -> TaskRead | None:
        with self._lock:
            for _ in range(2):  # a connection the standby ended (a restart) is opened again
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        url, autocommit=True, application_name="lab-api-replica", connect_timeout=5
                    )
                try:
                    row = self._conn.execute(READS["read_task_replica"], [task_id]).fetchone()
                    break
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    self._conn.close()
                    self._conn = None
            else:
                raise psycopg.OperationalError("the standby's connection was lost twice")
        if row is None:
            return None
        return TaskRead(_row_to_json(row), row[10], row[11], "replica", row[12], row[13])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


cached_reads = _CachedReads()
snapshot_reads = _SnapshotReads()
replica_reads = _ReplicaReads()


class NoReplica(RuntimeError):
    """A replica_read task, but LAB_REPLICA_URL names no standby."""


def read_task(task_id: str) -> TaskRead | None:
    """Read a task the way the lab API does, bugs included when its config asks for them."""
    cached = cached_reads.get(task_id)
    if cached is not None:
        return TaskRead(cached[0], cached[1], _current_snapshot(), "cached")
    if snapshot_reads.has(task_id):
        result = snapshot_reads.read(task_id, conninfo(), start=False)
        if result is not None:
            return TaskRead(*result, "snapshot")
    fresh = _fresh(task_id)
    if fresh is None:
        return None
    task, xmin, snapshot = fresh
    config = task.get("config") or {}
    if config.get("replica_read"):
        from django.conf import settings

        if not settings.LAB_REPLICA_URL:
            raise NoReplica(
                "replica_read needs a hot standby: set LAB_REPLICA_URL "
                "(python manage.py lifecycle standby start prints it)"
            )
        # The primary's read only told which task this is; what is answered is the
        # standby's (None: the row's insert is not replayed there yet, a 404 as in life).
        return replica_reads.read(task_id, settings.LAB_REPLICA_URL)
    if config.get("cached_read"):
        cached_reads.put(task_id, task, xmin)
    elif config.get("snapshot_read"):
        result = snapshot_reads.read(task_id, conninfo(), start=True)
        if result is not None:
            return TaskRead(*result, "snapshot")
    return TaskRead(task, xmin, snapshot, "fresh")
