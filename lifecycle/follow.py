"""The follower: every watched database's outbox copied into the event table, exactly once.

One thread per watched database (``lifecycle_watched_database``, re-read every few
seconds, so a database added by ``capture install --database`` is followed at once). Each
LISTENs on its database, then copies what the outbox holds, then waits for a NOTIFY or
the poll interval, whose fetch is also the ping that finds a dead connection.

Why an outbox that is emptied, not a position: a row is visible only once its writer
committed, and a copied row is deleted, so whatever commits late (ids out of order) or
while the inspector is stopped is simply still there at the next fetch. A copy is stored
under the row's uuid before the row is deleted: a crash between the two stores it again,
and the uuid makes that second copy nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from lifecycle import outbox, sql
from lifecycle.capture import PROBLEM_SEPARATOR, problem_line
from lifecycle.database import first_line, redact
from lifecycle.events import MAX_TASK_KEY
from lifecycle.versions import XID_WRAP

logger = logging.getLogger(__name__)

OUTBOX = sql.load("outbox")
FOLLOW = sql.load("follow")
MAX_PROBLEMS = 20  # broken tables of one database recorded for the home page


@dataclass
class FollowStats:
    copied: int = 0  # rows taken from the outbox and stored
    duplicates: int = 0  # rows whose uuid the store already had (copied before a crash)
    fetches: int = 0
    errors: int = 0


def copy_outbox(
    watched: psycopg.Connection[Any],
    store: psycopg.Connection[Any],
    database: str,
    *,
    batch: int = 1000,
    stats: FollowStats | None = None,
    commit_times: bool | None = None,
) -> int:
    """Copy every committed outbox row into the store and delete it; return how many.

    Both connections are in autocommit: the store's insert commits before the rows are
    deleted from the outbox. ``commit_times``: whether that server records them (asked
    when not given; a follower asks once per connection).
    """
    stats = stats or FollowStats()
    if commit_times is None:
        commit_times = records_commit_times(watched)
    total = 0
    while True:
        rows = watched.execute(
            OUTBOX["fetch"],
            {"commit_times": commit_times, "limit": batch, "max_key": MAX_TASK_KEY},
        ).fetchall()
        stats.fetches += 1
        if not rows:
            return total
        events = []
        for row in rows:
            (_, uuid, task_key, kind, status, old_status, at, txid, table) = row[:9]
            changed, values, application_name, pid, user, committed_at, version = row[9:]
            body: dict[str, Any] = {
                "schema": 1,
                "table": table,
                "op": kind.upper(),
                "old_status": old_status,
                "new_status": status if kind != "delete" else None,
                "changed": changed,
                "values": json.loads(values),
                "application_name": application_name,
                "pid": pid,
                "user": user,
                "database": database,
            }
            if committed_at is not None:
                body["committed_at"] = committed_at.isoformat()
            if version is not None and (txid is None or version != txid % XID_WRAP):
                body["xmin"] = version  # written in a savepoint: what its readers see
            events.append(
                {
                    "uuid": uuid,
                    "task_key": task_key,
                    "kind": kind,
                    "status": status,
                    "at": at.isoformat(),
                    "txid": txid,
                    "body": body,
                }
            )
        stored = store.execute(OUTBOX["store_events"], [json.dumps(events)]).rowcount
        watched.execute(OUTBOX["delete"], [[row[0] for row in rows]])
        stats.copied += len(rows)
        stats.duplicates += len(rows) - max(stored, 0)
        total += len(rows)
        if len(rows) < batch:
            return total


def records_commit_times(watched: psycopg.Connection[Any]) -> bool:
    """Whether the watched server records commit times (track_commit_timestamp)."""
    row = watched.execute(OUTBOX["commit_timestamps"]).fetchone()
    return bool(row and row[0])


@dataclass
class Follower:
    """Follow one watched database until ``stop``; reconnects by itself."""

    name: str
    url: str
    store_conninfo: str
    poll_interval: float = 1.0
    check_every: float = 30.0  # seconds between looks at the watched tables' columns
    stats: FollowStats = field(default_factory=FollowStats)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"follow-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                with (
                    psycopg.connect(
                        self.url,
                        autocommit=True,
                        connect_timeout=5,
                        application_name="lifecycle-follow",
                    ) as watched,
                    psycopg.connect(
                        self.store_conninfo, autocommit=True, connect_timeout=5
                    ) as store,
                ):
                    watched.execute(OUTBOX["listen"])
                    delay = 0.5
                    self._follow(watched, store)
            except Exception as exc:  # a database error, or a row no writer of ours made
                self.stats.errors += 1
                reason = first_line(exc) if isinstance(exc, psycopg.Error) else repr(exc)[:300]
                logger.warning(
                    "follow %s (%s): %s; retrying in %.1fs",
                    self.name,
                    redact(self.url),
                    reason,
                    delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, 10.0)

    def _follow(self, watched: psycopg.Connection[Any], store: psycopg.Connection[Any]) -> None:
        commit_times = records_commit_times(watched)
        checked = float("-inf")
        while not self._stopping.is_set():
            if time.monotonic() - checked >= self.check_every:
                self.check(watched, store)
                checked = time.monotonic()
            copy_outbox(watched, store, self.name, stats=self.stats, commit_times=commit_times)
            # Wake on the first notification (and take the rest of a burst with it), or
            # poll: a notification only says "look again".
            for _ in watched.notifies(timeout=self.poll_interval, stop_after=1):
                pass

    def check(self, watched: psycopg.Connection[Any], store: psycopg.Connection[Any]) -> None:
        """Record what is wrong with this database's capture (a watched table whose key or
        status column a migration took away), for the dashboard; "" when nothing is."""
        problems = [
            problem_line(t, redact(self.url))
            for t in (outbox.read_watched(watched) if outbox.has_schema(watched) else [])
            if t.broken
        ]
        if len(problems) > MAX_PROBLEMS:  # a page, not a listing: capture list has them all
            more = len(problems) - MAX_PROBLEMS
            problems = problems[:MAX_PROBLEMS] + [
                f"and {more} more broken table{'s' if more > 1 else ''}: "
                "python manage.py lifecycle capture list shows every one"
            ]
        if problems:
            logger.warning(
                "follow %s: %s",
                self.name,
                " | ".join(p.replace(PROBLEM_SEPARATOR, "; mend it with: ") for p in problems),
            )
        store.execute(FOLLOW["record_problem"], {"name": self.name, "problem": "\n".join(problems)})


def watched_databases(store_conninfo: str) -> dict[str, str]:
    with psycopg.connect(store_conninfo, autocommit=True, connect_timeout=5) as store:
        return dict(store.execute(FOLLOW["watched_databases"]).fetchall())


def follow_all(store_conninfo: str, stop: threading.Event, *, reload_every: float = 3.0) -> None:
    """Follow every watched database until ``stop`` is set, picking up added and removed ones."""
    followers: dict[str, Follower] = {}
    try:
        while not stop.is_set():
            try:
                wanted = watched_databases(store_conninfo)
            except psycopg.Error as exc:
                logger.warning(
                    "follow: cannot read the watched databases (%s)",
                    first_line(exc),
                )
                wanted = {name: f.url for name, f in followers.items()}
            for name in [n for n in followers if followers[n].url != wanted.get(n)]:
                followers.pop(name).stop()
            for name, url in wanted.items():
                if name not in followers:
                    logger.info("follow: following %s (%s)", name, redact(url))
                    followers[name] = Follower(name, url, store_conninfo)
                    followers[name].start()
            stop.wait(reload_every)
    finally:
        for follower in followers.values():
            follower.stop()
        for follower in followers.values():
            follower.join(5)
