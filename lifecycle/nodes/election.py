"""The roles that run once per deployment, elected through PostgreSQL.

``follow`` and ``maintain`` must work on exactly one node of a deployment at a time (the
nodes that share ``DATABASE_URL`` and ``LIFECYCLE_NAMESPACE``). Each process of such a role
takes a session advisory lock, one per role in the inspector's database (whatever the
namespace: both roles work on the database, so two namespaces on one database share them),
on a connection of its own (not
pooled, never in a transaction), before it does any work; the other nodes' processes of that
role stand by and ask again every ``RETRY`` seconds.

- **The holder stops as soon as it may have lost the lock**: its connection pings every
  ``PING`` seconds; an error, or no answer for ``LOST_AFTER`` seconds, and it stops its role
  at once (``Lead``'s ``on_lost``, then the process's exit; ``lifecycle up`` restarts it, as
  a standby).
- **A standby takes the role within about 10 s of the holder's death**: a killed process's
  connection closes with it, and PostgreSQL releases the lock at once (the standby asks
  within ``RETRY``); a lost host or network is noticed by the server's TCP keepalives
  within about 5 s (election.sql: keepalive), after the holder stopped itself, whose pings
  fail after ``LOST_AFTER``; a restart of PostgreSQL ends every lock and every holder's
  connection alike.
- Which node holds a role: the lock's connection is named ``lifecycle-<role> <node>``
  (``application_name``), and ``holders()`` reads it from ``pg_locks``.

The work of both roles is idempotent (a copy is stored under its uuid, findings are
recomputed from the events), so a holder that had not yet noticed its loss while a standby
began repeats work at worst, never loses or doubles it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from django.conf import settings

from lifecycle import sql
from lifecycle.runtime.database import conninfo, first_line, noticing_loss

logger = logging.getLogger(__name__)

ELECTION = sql.load("election")
ROLES = ("follow", "maintain")
RETRY = 1.0  # seconds between a standby's attempts
PING = 1.0  # seconds between the holder's pings of its lock's connection
# Seconds without an answer after which the holder stops (and EXIT_GRACE later exits):
# 3.5 s at most, before the server can free its lock (about 5 s: election.sql, keepalive).
LOST_AFTER = 2.5
EXIT_GRACE = 1.0  # seconds the role has to stop before the process exits
MAX_BACKOFF = 4.0  # seconds at most between a standby's attempts while the server is away


def _int4(text: str) -> int:
    return zlib.crc32(text.encode()) - 2**31


SPACE = _int4("lifecycle elected roles")


def lock_keys(role: str) -> dict[str, int]:
    """The advisory lock's two keys, in the inspector's database: ours, and the role's."""
    return {"space": SPACE, "role": _int4(role)}


def node_name() -> str:
    return str(settings.LIFECYCLE_NODE)


def _connect(role: str, database: str | None) -> psycopg.Connection[Any]:
    application_name = f"lifecycle-{role} {node_name()}"[:63]
    conn = psycopg.connect(
        database or conninfo(),
        application_name=application_name,
        autocommit=True,
        connect_timeout=5,
        # given up before the server's side frees the lock (election.sql: keepalive)
        **noticing_loss(idle=2, interval=1, user_timeout=LOST_AFTER),
    )
    conn.execute(ELECTION["keepalive"])
    return conn


class Lead:
    """A role held: the lock's connection, pinged by a thread of its own. When the
    connection fails or stops answering, ``on_lost`` is called once, with the reason, and
    the process exits ``EXIT_GRACE`` seconds later if it is still running."""

    def __init__(
        self,
        role: str,
        conn: psycopg.Connection[Any],
        on_lost: Callable[[str], None],
        exit_after: float | None = EXIT_GRACE,
    ) -> None:
        self.role = role
        self.conn = conn
        self.on_lost = on_lost
        self.exit_after = exit_after  # None: the caller stops by itself (a test)
        self.lost = ""
        self._released = threading.Event()
        self._answered = time.monotonic()
        self._once = threading.Lock()
        self._pinger = threading.Thread(target=self._ping, name=f"lead-{role}", daemon=True)
        self._watch = threading.Thread(
            target=self._watchdog, name=f"lead-{role}-watch", daemon=True
        )
        self._pinger.start()
        self._watch.start()

    def _ping(self) -> None:
        while not self._released.wait(PING):
            try:
                self.conn.execute(ELECTION["ping"])
                self._answered = time.monotonic()
            except Exception as exc:  # the connection is gone: so is the lock
                self._lose(f"its lock's connection failed: {first_line(exc)}")
                return

    def _watchdog(self) -> None:
        while not self._released.wait(PING / 2):
            silent = time.monotonic() - self._answered
            if silent > LOST_AFTER:
                self._lose(f"its lock's connection did not answer for {silent:.1f}s")
                return

    def _lose(self, reason: str) -> None:
        with self._once:
            if self.lost or self._released.is_set():
                return
            self.lost = reason
        logger.error(
            "%s: lost the role on node %s (%s): stopping at once; a standby takes it",
            self.role,
            node_name(),
            reason,
        )
        try:
            self.on_lost(reason)
        finally:
            if self.exit_after is not None:
                timer = threading.Timer(self.exit_after, os._exit, [3])
                timer.daemon = True
                timer.start()

    def release(self) -> None:
        """Give the role up (the process stops): its lock goes with its connection."""
        self._released.set()
        try:
            self.conn.close()
        except psycopg.Error:
            pass


def lead(
    role: str,
    stop: threading.Event,
    on_lost: Callable[[str], None],
    *,
    log: Callable[[str], None] = logger.info,
    exit_after: float | None = EXIT_GRACE,
    database: str | None = None,
) -> Lead | None:
    """Wait until this node holds ``role`` (None if ``stop`` is set first). A database
    that cannot be reached meanwhile is asked again, every ``RETRY`` seconds or more.
    ``database``: another inspector database's conninfo than the settings' (tests)."""
    failures = 0
    announced = False
    while not stop.is_set():
        conn = None
        try:
            conn = _connect(role, database)
            got = _stand_by(role, conn, stop, log, announce=not announced, database=database)
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            failures += 1
            if failures == 1:
                logger.warning(
                    "%s: cannot reach PostgreSQL to take the role (%s); asking again",
                    role,
                    first_line(exc),
                )
            stop.wait(min(RETRY * 2**failures, MAX_BACKOFF))
            continue
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if got:
            log(f"{role}: node {node_name()} holds the role")
            return Lead(role, conn, on_lost, exit_after)
        conn.close()
        announced = True
    return None


def _stand_by(
    role: str,
    conn: psycopg.Connection[Any],
    stop: threading.Event,
    log: Callable[[str], None],
    *,
    announce: bool,
    database: str | None,
) -> bool:
    """Ask for the lock until it is had (True) or ``stop`` is set (False)."""
    keys = lock_keys(role)
    while not stop.is_set():
        row = conn.execute(ELECTION["try_lock"], keys).fetchone()
        if row and row[0]:
            return True
        if announce:
            holder = holders(database).get(role)
            log(
                f"{role}: standing by on node {node_name()}: "
                f"{holder.node if holder else 'another node'} holds the role"
            )
            announce = False
        stop.wait(RETRY)
    return False


@dataclass(frozen=True)
class Holder:
    node: str
    since: datetime
    address: str


def holders(database: str | None = None) -> dict[str, Holder]:
    """Which node holds each elected role now (a role no node holds is absent), in the
    inspector's database (``database``: another one's conninfo)."""
    by_key = {lock_keys(role)["role"] & 0xFFFFFFFF: role for role in ROLES}
    space = SPACE
    with psycopg.connect(database or conninfo(), autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(ELECTION["holders"], {"space": space}).fetchall()
    found: dict[str, Holder] = {}
    for key, application, since, address in rows:
        role = by_key.get(int(key))
        if role is not None:
            node = (application or "").partition(" ")[2] or "(unnamed)"
            found[role] = Holder(node, since, str(address or "local socket"))
    return found
