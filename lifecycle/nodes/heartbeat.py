"""Each node of the deployment says it is alive: a row in ``lifecycle_node``, kept fresh.

``lifecycle up`` registers its node (name, roles, its web's address, host, pid) and a
thread of the supervisor process refreshes its ``seen_at`` every ``BEAT`` seconds, on a
connection of its own (autocommit). A failure is logged once and tried again at the next
beat, never the node's end. A node stopped cleanly marks its row stopped; one not seen
for ``GONE_AFTER`` seconds is gone (``lifecycle status``); rows not seen for
``PRUNE_AFTER`` seconds are deleted, by any node's beat.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from django.conf import settings

from lifecycle import sql
from lifecycle.runtime.database import conninfo, first_line

logger = logging.getLogger(__name__)

HEARTBEAT = sql.load("heartbeat")
BEAT = 3.0  # seconds between two refreshes of a node's row
GONE_AFTER = 15.0  # seconds without a refresh after which a node is gone
PRUNE_AFTER = 86400.0  # seconds after which a node's row is deleted


def web_address(host: str, port: int) -> str:
    """Where a node's web answers, as another machine would reach it."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Heartbeat:
    """One node's row, registered by ``start`` and kept fresh until ``stop``."""

    def __init__(self, roles: Sequence[str], address: str = "", *, beat: float = BEAT) -> None:
        self.row = {
            "name": str(settings.LIFECYCLE_NODE)[:200],
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
        }
        self.roles = list(roles)
        self.address = address[:300]
        self.beat = beat
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._failing = False
        self._registered = False
        self._shared = False  # another process has this node's name (said once)
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating, and mark the row stopped (tried once, briefly)."""
        self._stop.set()
        self._thread.join(self.beat + 10)
        try:
            self._execute("stop", self.row)
        except Exception as exc:
            logger.warning(
                "node %s: could not mark itself stopped (%s)", self.row["name"], first_line(exc)
            )
        self._close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._registered:
                    self._execute(
                        "register", {**self.row, "roles": self.roles, "address": self.address}
                    )
                    self._registered = True
                elif self._execute("beat", self.row) == 0 and not self._taken():
                    self._registered = False  # deleted meanwhile: registered again at once
                    continue
                self._execute("prune", {"after": PRUNE_AFTER})
                if self._failing:
                    logger.info("node %s: heartbeat recorded again", self.row["name"])
                self._failing = False
            except Exception as exc:  # never the node's end: the next beat tries again
                self._close()
                if not self._failing:
                    logger.warning(
                        "node %s: heartbeat not recorded (%s); trying again every %gs",
                        self.row["name"],
                        first_line(exc),
                        self.beat,
                    )
                self._failing = True
            self._stop.wait(self.beat)

    def _taken(self) -> bool:
        """Whether another live process registered this node's name (two nodes given one
        ``LIFECYCLE_NODE``): said once, and the row left to it rather than fought over."""
        assert self._conn is not None
        other = self._conn.execute(HEARTBEAT["owner"], self.row).fetchone()
        if other is None:
            return False
        if not self._shared:
            logger.warning(
                "node %s: another process (host %s, pid %s) registered the same node name; "
                "give each node its own LIFECYCLE_NODE",
                self.row["name"],
                other[0],
                other[1],
            )
            self._shared = True
        return True

    def _execute(self, name: str, params: dict[str, Any]) -> int:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                conninfo(application_name=f"lifecycle-heartbeat {self.row['name']}"[:63]),
                autocommit=True,
                connect_timeout=5,
            )
            self._conn.execute("SET statement_timeout = 5000")
        return self._conn.execute(HEARTBEAT[name], params).rowcount

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None
