"""The follower: every watched database's outbox copied into the event table, exactly once.

One thread per watched database (``lifecycle_watched_database``, re-read every few
seconds, so a database added by ``capture install --database`` is followed at once). Each
LISTENs on its database, then copies what the outbox holds, then waits for a NOTIFY or
the poll interval, whose fetch is also the ping that finds a dead connection. Writers
notify only while it waits (``_Waiter``): a busy follower copies in a loop and lets them
commit without the NOTIFY's server-wide lock.

Why an outbox that is emptied, not a position: a row is visible only once its writer
committed, and a copied row is deleted, so whatever commits late (ids out of order) or
while the inspector is stopped is simply still there at the next fetch. A copy is stored
under the row's uuid before the row is deleted: a crash between the two stores it again,
and the uuid makes that second copy nothing.

A copy never goes through Python objects: the watched database makes the events' rows
(``COPY (SELECT ...) TO STDOUT``) and the store takes the same bytes (``COPY ... FROM
STDIN``), a batch stored while the next is fetched: about 30,000 changes a second where
reading each row into a dict, then a JSON document for the store, managed 13,000
(``python -m bench.follower``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql as pgsql

from lifecycle import sql
from lifecycle.capture import outbox
from lifecycle.capture.trigger import PROBLEM_SEPARATOR, problem_line
from lifecycle.events import MAX_TASK_KEY
from lifecycle.runtime.database import first_line, redact

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


BATCH = 5000  # outbox rows copied a transaction, at most
# Writers stop notifying a follower that copies more than QUIET_RATE rows a second (measured
# over RATE_WINDOW), until nothing came for QUIET_LINGER seconds; meanwhile it copies every
# GATHER seconds, or at once after a full batch.
QUIET_RATE = 100.0
RATE_WINDOW = 0.5
QUIET_LINGER = 0.25
GATHER = 0.01


def copy_outbox(
    watched: psycopg.Connection[Any],
    store: psycopg.Connection[Any],
    database: str,
    *,
    batch: int = BATCH,
    stats: FollowStats | None = None,
    commit_times: bool | None = None,
    fetch: pgsql.Composed | None = None,
) -> int:
    """Copy every committed outbox row into the store and delete it; return how many.

    Both connections are in autocommit; the watched session is set to write dates and
    text as the store reads them (``_as_the_store_reads``). The watched database makes the
    events' rows (outbox.sql: fetch), piped as COPY's text into the store's COPY, without
    being read here but for their outbox ids. Past a full batch, the store takes each on a
    thread of its own while the next is fetched; a batch is deleted from the outbox once
    the store has committed it. ``fetch``: the statement ``fetch_statement`` made for these
    connections (made here when not given: a follower makes it once per connection, and
    again at each check), ``commit_times`` its argument.
    """
    stats = stats or FollowStats()
    if fetch is None:
        fetch = fetch_statement(watched, database, batch=batch, commit_times=commit_times)
    _as_the_store_reads(watched, store)
    total = 0
    storer: ThreadPoolExecutor | None = None  # only once a batch was full: a few copies do
    storing: tuple[list[int], Future[int]] | None = None  # a batch the store is taking
    try:
        while True:
            ids, rows = _fetch(watched, fetch, storing[0] if storing else [])
            stats.fetches += 1
            if storing is not None:
                done, stored = storing[0], storing[1].result()  # raises what the store did
                watched.execute(OUTBOX["delete"], [done])
                stats.copied += len(done)
                stats.duplicates += len(done) - stored
                total += len(done)
                storing = None
            if not ids:
                return total
            if len(ids) < batch:  # the last: nothing to fetch meanwhile
                stored = _store(store, rows)
                watched.execute(OUTBOX["delete"], [ids])
                stats.copied += len(ids)
                stats.duplicates += len(ids) - stored
                return total + len(ids)
            if storer is None:
                storer = ThreadPoolExecutor(1, thread_name_prefix="follow-store")
            storing = (ids, storer.submit(_store, store, rows))
    finally:
        if storer is not None:
            storer.shutdown(wait=True)  # a store still taking a batch ends first


def fetch_statement(
    watched: psycopg.Connection[Any],
    database: str,
    *,
    batch: int = BATCH,
    commit_times: bool | None = None,
) -> pgsql.Composed:
    """outbox.sql's fetch for this watched database: whether its server records commit
    times (``commit_times``, asked when not given) and its outbox has ``row_xmin`` (an
    older install's has not, until ``capture install`` runs again)."""
    if commit_times is None:
        commit_times = records_commit_times(watched)
    row = watched.execute(OUTBOX["has_row_xmin"]).fetchone()
    return pgsql.SQL(OUTBOX["fetch"]).format(
        limit=pgsql.Literal(batch),
        max_key=pgsql.Literal(MAX_TASK_KEY),
        database=pgsql.Literal(database),
        committed_at=pgsql.SQL("pg_xact_commit_timestamp(o.xmin)" if commit_times else "NULL"),
        row_xmin=pgsql.SQL("o.row_xmin" if row and row[0] else "NULL"),
        exclude=pgsql.Placeholder("exclude"),
    )


def _as_the_store_reads(watched: psycopg.Connection[Any], store: psycopg.Connection[Any]) -> None:
    """COPY's text as the store reads it, whatever the watched session's settings were (a
    role's ``ALTER ROLE ... SET datestyle``): set for the session, and only when the server
    reports another value, so that a follower's copies pay nothing for it (they paid a
    transaction of their own, three round trips, each)."""
    encoding = store.info.parameter_status("client_encoding") or "UTF8"
    info = watched.info
    if info.parameter_status("DateStyle") != "ISO, YMD" or (
        info.parameter_status("client_encoding") != encoding
    ):
        watched.execute(
            pgsql.SQL("SET datestyle = 'ISO, YMD'; SET client_encoding = {}").format(
                pgsql.Literal(encoding)
            )
        )


def _fetch(
    watched: psycopg.Connection[Any], fetch: pgsql.Composed, exclude: list[int]
) -> tuple[list[int], list[bytes]]:
    """A batch of the outbox: its ids, and the event table's rows as COPY's text lines."""
    ids: list[int] = []
    rows: list[bytes] = []
    with watched.cursor() as cursor, cursor.copy(fetch, {"exclude": exclude}) as out:
        for chunk in out:
            outbox_id, _, line = bytes(chunk).partition(b"\t")
            ids.append(int(outbox_id))
            rows.append(line)
    return ids, rows


def _store(store: psycopg.Connection[Any], rows: list[bytes]) -> int:
    """Rows into the event table, committed: how many were new (a copy made before a crash,
    between the store's commit and the outbox's delete, is skipped by its uuid)."""
    data = b"".join(rows)
    try:
        with store.transaction(), store.cursor() as into, into.copy(FOLLOW["copy_events"]) as copy:
            copy.write(data)
        return len(rows)
    except psycopg.errors.UniqueViolation:
        pass
    with store.transaction(), store.cursor() as into:
        into.execute(FOLLOW["create_staging"])
        with into.copy(FOLLOW["copy_staging"]) as copy:
            copy.write(data)
        into.execute(FOLLOW["insert_from_staging"])
        return max(into.rowcount, 0)


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
    quiet_rate: float = QUIET_RATE
    quiet_linger: float = QUIET_LINGER
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
        row = watched.execute(OUTBOX["has_listener"]).fetchone()
        waiter = None
        if row and row[0]:
            waiter = _Waiter(watched, self.quiet_rate, self.quiet_linger)
        elif row and row[0] is False:
            logger.warning(
                "follow %s: this role may not add or remove rows of lifecycle_capture.listener, "
                "so no writer notifies it: changes arrive at each poll (every %.1fs); run "
                "`lifecycle capture install` again as the role the follower connects as",
                self.name,
                self.poll_interval,
            )
        checked = float("-inf")
        fetch = None
        try:
            while not self._stopping.is_set():
                if time.monotonic() - checked >= self.check_every:
                    self.check(watched, store)
                    if waiter is not None:
                        waiter.again()
                    fetch = fetch_statement(watched, self.name, commit_times=commit_times)
                    checked = time.monotonic()
                copied = copy_outbox(watched, store, self.name, stats=self.stats, fetch=fetch)
                if waiter is None:  # an older install: every change notifies
                    self._wait(watched, self.poll_interval)
                    continue
                pause = waiter.after_copy(copied, time.monotonic())
                if pause is None:  # waiting: writers notify
                    self._wait(watched, self.poll_interval)
                elif pause and waiter.waiting:  # just set to wait: a last look after this
                    self._wait(watched, pause)
                else:  # busy: the next rows gather meanwhile
                    self._pause(watched, pause)
        finally:
            if waiter is not None and waiter.waiting and not watched.closed:
                try:
                    watched.execute(OUTBOX["listener_busy"])
                except psycopg.Error:
                    pass  # its session is gone with it: the next follower clears the row

    def _wait(self, watched: psycopg.Connection[Any], timeout: float) -> None:
        """Wake on the first notification (and take the rest of a burst with it), after
        ``timeout``, or on ``stop``: a notification only says "look again"."""
        deadline = time.monotonic() + timeout
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for _ in watched.notifies(timeout=min(left, 0.5), stop_after=1):
                return

    def _pause(self, watched: psycopg.Connection[Any], seconds: float) -> None:
        """Let the next changes gather: notifications that come meanwhile (an older install's
        writers, or another follower's) are read and dropped, not kept in memory."""
        for _ in watched.notifies(timeout=0):
            pass
        self._stopping.wait(seconds)

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


class _Waiter:
    """Whether writers notify this follower (its row in lifecycle_capture.listener).

    Idle, it waits for a NOTIFY. Once changes come faster than ``quiet_rate`` a second, it
    takes its row out: writers stop notifying (PostgreSQL commits transactions that notified
    one at a time) and it copies in a loop, a pause of ``GATHER`` between copies that found
    few rows. Once nothing came for ``quiet_linger`` seconds it puts its row back and copies
    once more after a pause: a writer whose statement ran before the row was back sent
    nothing, and its commit is taken then (or, committed later still, at the next poll).
    """

    def __init__(
        self, watched: psycopg.Connection[Any], quiet_rate: float, quiet_linger: float
    ) -> None:
        self.watched = watched
        self.quiet_rate = quiet_rate
        self.quiet_linger = quiet_linger
        watched.execute(OUTBOX["listener_clear"])
        watched.execute(OUTBOX["listener_busy"])  # a row of a pid reused since
        self.waiting = False
        self.window_start = time.monotonic()  # the rate: rows copied since then
        self.window_rows = 0
        self.last_rows = self.window_start  # when a copy last found rows
        self.rechecked = True  # whether a copy ran since the row went back

    def after_copy(self, copied: int, now: float) -> float | None:
        """After a copy of ``copied`` rows: None to wait for a NOTIFY (or the poll), else
        the seconds to pause before the next copy (0: at once)."""
        if copied:
            self.last_rows = now
        if self.waiting:
            if now - self.window_start > RATE_WINDOW:
                self.window_start, self.window_rows = now, 0
            self.window_rows += copied
            if self.window_rows < self.quiet_rate * RATE_WINDOW:
                if self.rechecked:
                    return None
                self.rechecked = True
                return None if copied == 0 else 0.0
            self._set(waiting=False)
        elif now - self.last_rows >= self.quiet_linger:
            self._set(waiting=True)
            self.window_start, self.window_rows, self.rechecked = now, 0, False
            return GATHER
        return 0.0 if copied >= BATCH else GATHER

    def again(self) -> None:
        """Say so again if it waits: its row may have gone with a schema dropped and made
        anew (capture remove --all, then install) while it waited."""
        if self.waiting:
            self.watched.execute(OUTBOX["listener_wait"])

    def _set(self, *, waiting: bool) -> None:
        self.watched.execute(OUTBOX["listener_wait" if waiting else "listener_busy"])
        self.waiting = waiting


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
