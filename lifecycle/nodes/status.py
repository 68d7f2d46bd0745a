"""What the deployment is doing, asked of each source once: ``lifecycle status``,
``GET /api/status`` and the status page all show ``deployment_status()``.

- the nodes (lifecycle/nodes/heartbeat.py): up, gone (not seen for ``GONE_AFTER`` seconds) or
  stopped;
- which node holds ``follow`` and ``maintain`` (``election.holders()``);
- the ingest queue's depth and consumers (a passive declare: nothing is made);
- the follower's lag per watched database: its outbox's rows and the oldest one's age;
- the maintainer's lag: the events after its stored position, and the oldest one's age.

Every source is asked with a short timeout, and one that fails is an ``error`` of its
part (its message's first line), never the whole's failure. Everything is bounded: at most
``MAX_NODES`` nodes and ``MAX_WATCHED`` watched databases, counts stop at ``COUNT_CAP``.
Watched databases are shown by name and redacted address, never with a password.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pika
import psycopg
from django.conf import settings

from lifecycle import sql
from lifecycle.client import topology
from lifecycle.nodes import election
from lifecycle.nodes.heartbeat import GONE_AFTER
from lifecycle.runtime.database import conninfo, first_line, redact

STATUS = sql.load("status")
TIMEOUT = 3  # seconds each source has to answer
MAX_NODES = 100
MAX_WATCHED = 50
COUNT_CAP = 100_000  # rows counted at most; past it a count says "at least"
MAX_ERROR = 300  # characters of an error shown


def _error(exc: BaseException) -> str:
    return first_line(exc)[:MAX_ERROR]


@dataclass(frozen=True)
class NodeState:
    name: str
    roles: list[str]
    address: str
    host: str
    pid: int
    started: datetime
    seen: datetime
    seen_ago: float  # seconds
    state: str  # "up", "gone" or "stopped"

    @property
    def seen_text(self) -> str:
        return f"{ago(self.seen_ago)} ago"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roles": self.roles,
            "address": self.address or None,
            "host": self.host,
            "pid": self.pid,
            "started": self.started.isoformat(),
            "seen": self.seen.isoformat(),
            "seen_seconds_ago": round(self.seen_ago, 1),
            "state": self.state,
            "gone": self.state == "gone",
        }


@dataclass(frozen=True)
class Ingest:
    queue: str
    depth: int | None = None
    consumers: int | None = None
    error: str = ""
    declared: bool = True  # False: no ingestor (nor publisher) has declared it yet

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "depth": self.depth,
            "consumers": self.consumers,
            "declared": self.declared,
            "error": self.error or None,
        }


def _backlog(items: int, noun: str, oldest_seconds: float | None) -> str:
    """ "3 pending, oldest 2.1s" (empty when there are none)."""
    return f"{count(items)} {noun}, oldest {ago(oldest_seconds)}" if items else ""


@dataclass(frozen=True)
class OutboxLag:
    """A watched database's outbox: what the follower has not copied yet."""

    name: str
    address: str  # redacted
    pending: int | None = None
    oldest_seconds: float | None = None
    error: str = ""

    @property
    def lag_text(self) -> str:
        assert self.pending is not None
        return _backlog(self.pending, "pending", self.oldest_seconds) or "nothing pending"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "pending": self.pending,
            "pending_capped": self.pending is not None and self.pending >= COUNT_CAP,
            "oldest_seconds": _round(self.oldest_seconds),
            "error": self.error or None,
        }


@dataclass(frozen=True)
class MaintainLag:
    checked_through: int | None = None
    behind: int | None = None
    oldest_seconds: float | None = None
    error: str = ""

    @property
    def lag_text(self) -> str:
        assert self.behind is not None
        noun = "event behind" if self.behind == 1 else "events behind"
        behind = _backlog(self.behind, noun, self.oldest_seconds) or "no event behind"
        return f"checked through event {self.checked_through}; {behind}"

    def as_json(self) -> dict[str, Any]:
        return {
            "checked_through": self.checked_through,
            "behind": self.behind,
            "behind_capped": self.behind is not None and self.behind >= COUNT_CAP,
            "oldest_seconds": _round(self.oldest_seconds),
            "error": self.error or None,
        }


@dataclass(frozen=True)
class Status:
    at: datetime
    namespace: str
    nodes: list[NodeState]
    singletons: dict[str, election.Holder | None]
    ingest: Ingest
    follow: list[OutboxLag]
    maintain: MaintainLag
    errors: dict[str, str] = field(default_factory=dict)  # part -> why it is missing

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "namespace": self.namespace,
            "nodes": [node.as_json() for node in self.nodes],
            "singletons": {
                role: holder.node if holder else None for role, holder in self.singletons.items()
            },
            "holders": {
                role: {"node": h.node, "since": h.since.isoformat(), "address": h.address}
                if h
                else None
                for role, h in self.singletons.items()
            },
            "ingest": self.ingest.as_json(),
            "follow": {
                "databases": [lag.as_json() for lag in self.follow],
                "error": self.errors.get("follow"),
            },
            "maintain": self.maintain.as_json(),
            "errors": self.errors,
        }


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(max(seconds, 0.0), 1)


def deployment_status() -> Status:
    """Ask every source once (at most ``TIMEOUT`` seconds each, the watched databases side
    by side)."""
    errors: dict[str, str] = {}
    nodes: list[NodeState] = []
    watched: list[tuple[str, str]] = []
    maintain = MaintainLag(error="the inspector's database did not answer")
    try:
        with _connect(conninfo()) as conn:  # each part on its own: one that fails is its own
            try:
                nodes = _nodes(conn)
            except psycopg.Error as exc:
                errors["nodes"] = _error(exc)
            try:
                rows = conn.execute(STATUS["watched"], {"limit": MAX_WATCHED}).fetchall()
                watched = [(str(name), str(url)) for name, url in rows]
            except psycopg.Error as exc:
                errors["follow"] = _error(exc)
            maintain = _maintain(conn)
    except psycopg.Error as exc:
        for part in ("nodes", "follow"):
            errors[part] = _error(exc)
        maintain = MaintainLag(error=_error(exc))
    try:
        held = election.holders()
        singletons: dict[str, election.Holder | None] = {r: held.get(r) for r in election.ROLES}
    except Exception as exc:
        errors["singletons"] = _error(exc)
        singletons = {role: None for role in election.ROLES}
    ingest = _ingest()
    if ingest.error:
        errors["ingest"] = ingest.error
    follow: list[OutboxLag] = []
    if watched:
        with ThreadPoolExecutor(min(8, len(watched)), thread_name_prefix="status") as pool:
            follow = list(pool.map(lambda nu: _outbox_lag(*nu), watched))
    for lag in follow:
        if lag.error:
            errors[f"follow {lag.name}"] = lag.error
    if maintain.error:
        errors["maintain"] = maintain.error
    return Status(
        at=datetime.now(UTC),
        namespace=settings.LIFECYCLE_NAMESPACE,
        nodes=nodes,
        singletons=singletons,
        ingest=ingest,
        follow=follow,
        maintain=maintain,
        errors=errors,
    )


def _connect(info: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(
        info, autocommit=True, connect_timeout=TIMEOUT, application_name="lifecycle-status"
    )
    conn.execute(f"SET statement_timeout = {TIMEOUT * 1000}")
    return conn


STATE_ORDER = {"up": 0, "gone": 1, "stopped": 2}


def _nodes(conn: psycopg.Connection[Any]) -> list[NodeState]:
    found = []
    for name, roles, address, host, pid, started, seen, stopped, silent in conn.execute(
        STATUS["nodes"], {"limit": MAX_NODES}
    ).fetchall():
        state = "stopped" if stopped else ("gone" if silent > GONE_AFTER else "up")
        found.append(
            NodeState(name, list(roles), address, host, pid, started, seen, float(silent), state)
        )
    return sorted(found, key=lambda n: (STATE_ORDER[n.state], n.name))


def _maintain(conn: psycopg.Connection[Any]) -> MaintainLag:
    try:
        row = conn.execute(STATUS["maintain_lag"], {"cap": COUNT_CAP}).fetchone()
    except psycopg.Error as exc:
        return MaintainLag(error=_error(exc))
    assert row is not None
    return MaintainLag(int(row[0]), int(row[1]), row[2])


def _outbox_lag(name: str, url: str) -> OutboxLag:
    address = redact(url)
    try:
        with _connect(url) as conn:
            row = conn.execute(STATUS["outbox_lag"], {"cap": COUNT_CAP}).fetchone()
    except psycopg.errors.UndefinedTable:
        return OutboxLag(name, address, error="no capture here: its outbox is missing")
    except (psycopg.Error, ValueError) as exc:  # ValueError: an address that does not parse
        return OutboxLag(name, address, error=f"unreachable: {_error(exc)}")
    assert row is not None
    return OutboxLag(name, address, int(row[0]), row[1])


def _ingest() -> Ingest:
    queue = topology.ingest_queue(settings.LIFECYCLE_NAMESPACE)
    try:
        params = pika.URLParameters(settings.AMQP_URL)
        params.socket_timeout = TIMEOUT
        params.blocked_connection_timeout = TIMEOUT
        params.stack_timeout = TIMEOUT + 2
        params.connection_attempts = 1
        connection = pika.BlockingConnection(params)
    except Exception as exc:
        return Ingest(queue, error=f"RabbitMQ unreachable: {_error(exc) or type(exc).__name__}")
    quiet = logging.getLogger("pika.channel")
    was, quiet.disabled = quiet.disabled, True  # a missing queue is an answer, not a warning
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return Ingest(queue, declared.method.message_count, declared.method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:  # no ingest node has run in this namespace yet: nothing waits
            return Ingest(queue, 0, 0, declared=False)
        return Ingest(queue, error=f"the queue cannot be read ({exc.reply_text[:MAX_ERROR]})")
    except Exception as exc:
        return Ingest(queue, error=_error(exc) or type(exc).__name__)
    finally:
        quiet.disabled = was
        try:
            connection.close()
        except Exception:
            pass


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def count(n: int) -> str:
    return f"at least {n:,}" if n >= COUNT_CAP else f"{n:,}"


def text(status: Status) -> list[str]:
    """``lifecycle status``'s lines."""
    out = [f"deployment of namespace {status.namespace}, at {status.at:%Y-%m-%d %H:%M:%S} UTC"]
    out.append("nodes:")
    if "nodes" in status.errors:
        out.append(f"  unknown: {status.errors['nodes']}")
    elif not status.nodes:
        out.append("  none registered (no `lifecycle up` has run here)")
    width = max((len(n.name) for n in status.nodes), default=0)
    for node in status.nodes:
        out.append(
            f"  {node.name:<{width}}  {node.state:<7}  {','.join(node.roles):<32} "
            f"seen {node.seen_text}  {node.address or '(no web)'}  "
            f"host {node.host} pid {node.pid}"
        )
    out.append("singletons:")
    for role, holder in status.singletons.items():
        if "singletons" in status.errors:
            who = f"unknown: {status.errors['singletons']}"
        elif holder is None:
            who = "no node holds it"
        else:
            who = f"{holder.node} (since {holder.since:%Y-%m-%d %H:%M:%S %Z})"
        out.append(f"  {role:<9} {who}")
    ingest = status.ingest
    if ingest.error:
        out.append(f"ingest queue {ingest.queue}: unknown: {ingest.error}")
    elif not ingest.declared:
        out.append(f"ingest queue {ingest.queue}: not declared yet (no ingest node has run)")
    else:
        out.append(
            f"ingest queue {ingest.queue}: {ingest.depth:,} waiting, "
            f"{ingest.consumers} consumer{'' if ingest.consumers == 1 else 's'}"
        )
    out.append("follower lag (outbox of each watched database):")
    if "follow" in status.errors:
        out.append(f"  unknown: {status.errors['follow']}")
    elif not status.follow:
        out.append("  no watched database")
    for lag in status.follow:
        if lag.error:
            out.append(f"  {lag.name} ({lag.address}): {lag.error}")
        else:
            out.append(f"  {lag.name} ({lag.address}): {lag.lag_text}")
    m = status.maintain
    if m.error:
        out.append(f"maintainer lag: unknown: {m.error}")
    else:
        out.append(f"maintainer lag: {m.lag_text}")
    return out
