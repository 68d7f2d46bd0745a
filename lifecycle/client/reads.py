"""Reads an API serves, reported as ``api`` events: the status returned and, where the API
can say it, the row version it read (``xmin``) and its snapshot (``pg_current_snapshot()``).

Reporting never fails a request, and holds it only when asked: by default the publisher
only queues; ``confirm=`` seconds waits (at most that long) until RabbitMQ has the event,
so a response the client got implies its read was recorded even if the process is killed
right after (the lab does, with 50 ms).

Inside ``deferred_reads()`` (the Django middleware opens one per request) a read is
stamped when it is made and published once the response's status is known, with that
status; elsewhere it is published at once, as answered with 200 unless told otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lifecycle.client import config, messages
from lifecycle.client.context import attempt_fields
from lifecycle.client.publisher import get_publisher

logger = logging.getLogger(__name__)

ANSWERED = 200  # the status a read is reported with when nobody said another


@dataclass(frozen=True)
class ReadVersion:
    """What one read returned (``status``) and which row version and snapshot it read.

    Small and picklable: keep it with an answer you cache, and report each answer served
    from that cache with it (``report_cached``), so the checker can tell a stale cache."""

    xmin: int | None
    snapshot: str | None
    status: str | None


class DeferredReads:
    """The reads of one request, held until its response's status is known."""

    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []
        self._confirm = 0.0

    def hold(self, message: dict[str, Any], confirm: float) -> None:
        self._pending.append(message)
        self._confirm = max(self._confirm, confirm)

    def report(self, http_status: int) -> None:
        """Publish the reads held so far, each with ``http_status`` unless it named its own;
        never raises. Waits for RabbitMQ's confirm only if a read asked for it."""
        pending, self._pending = self._pending, []
        confirm, self._confirm = self._confirm, 0.0
        try:
            publisher = get_publisher()
            ticket = None
            for message in pending:
                body = message["body"]
                if body.get("http_status") is None:
                    body["http_status"] = http_status
                ticket = publisher.publish(message) or ticket
            if ticket is not None and confirm > 0:
                publisher.wait(ticket, timeout=confirm)  # its own confirm, not the backlog's
        except Exception:  # instrumentation must never break the observed API
            logger.debug("could not report %d deferred reads", len(pending), exc_info=True)

    @property
    def waits(self) -> bool:
        """Whether ``report`` would wait for RabbitMQ (an async caller runs it in a thread)."""
        return bool(self._pending) and self._confirm > 0


_deferred: ContextVar[DeferredReads | None] = ContextVar("lifecycle_deferred_reads", default=None)


@contextmanager
def deferred_reads() -> Iterator[DeferredReads]:
    """Hold every read reported in the block (and in what it runs with a copy of its
    context: threads of ``sync_to_async``, ``asyncio.to_thread``, ``carry``) until the
    caller knows the answer's status: ``reads.report(response.status_code)`` after the
    block. Reads made after the block are published at once again."""
    held = DeferredReads()
    token = _deferred.set(held)
    try:
        yield held
    finally:
        _deferred.reset(token)


def report_read(
    task: object,
    status: str | None,
    *,
    xmin: int | None = None,
    snapshot: str | None = None,
    client: str | None = None,
    path: str | None = None,
    http_status: int | None = None,
    cached: bool = False,
    standby: bool | None = None,
    replayed_at: datetime | str | None = None,
    confirm: float = 0.0,
) -> None:
    """Publish one read of ``task`` (the application's key: ``LIFECYCLE_KEY_PREFIX`` goes
    before it) that returned ``status``; never raises.

    ``cached``: the answer came from the application's own cache; ``xmin`` and ``snapshot``
    are then those of the read that filled the cache. ``standby``: the server that answered
    was a hot standby (``pg_is_in_recovery()``), and ``replayed_at`` how far its replay had
    come (``pg_last_xact_replay_timestamp()``); the helpers below select both in the read's
    own statement. ``http_status``: the response's
    status (default: the request's, inside ``deferred_reads``; else 200). ``confirm``: wait
    up to that many seconds for RabbitMQ to confirm it (0: never wait)."""
    try:
        message = messages.make_message(
            source="api",
            kind="read",
            task=config.task_key(task),
            status=status,
            body={
                "xmin": xmin,
                "snapshot": snapshot,
                "client": client,
                "path": path,
                "http_status": http_status,
                "cached": bool(cached),
                **_server_fields(standby, replayed_at),
                **attempt_fields(),  # a read made by a worker's attempt names it
            },
        )
        held = _deferred.get()
        if held is not None:
            held.hold(message, confirm)
            return
        if http_status is None:
            message["body"]["http_status"] = ANSWERED
        publisher = get_publisher()
        ticket = publisher.publish(message)
        if confirm > 0:
            publisher.wait(ticket, timeout=confirm)  # its own confirm, not the backlog's
    except Exception:  # instrumentation must never break the observed API
        logger.debug("could not report a read of %s", task, exc_info=True)


def _server_fields(standby: bool | None, replayed_at: datetime | str | None) -> dict[str, Any]:
    """Which server answered: said only when the caller knows (a standby, and its replay)."""
    if standby is None:
        return {}
    if isinstance(replayed_at, datetime):
        replayed_at = replayed_at.isoformat()
    return {"standby": bool(standby), "replayed_at": replayed_at if standby else None}


def report_cached(
    task: object,
    version: ReadVersion | None,
    *,
    client: str | None = None,
    path: str | None = None,
    http_status: int | None = None,
    confirm: float = 0.0,
) -> None:
    """Report an answer served from the application's own cache: the status, row version
    and snapshot of the read that filled it (``version``), marked ``cached``. A ``None``
    version (the cache was filled by a read that knew none) reports nothing."""
    if version is None:
        return
    report_read(
        task,
        version.status,
        xmin=version.xmin,
        snapshot=version.snapshot,
        client=client,
        path=path,
        http_status=http_status,
        cached=True,
        confirm=confirm,
    )


# -- reads that know their version ----------------------------------------------------------
#
# Each helper is the application's own read of one row, with the row's version (``xmin``) and
# the reading transaction's snapshot selected in the same statement, reported as it returns.
# The read itself behaves (and fails) as the application's query would; only the report is
# guarded. The table must be a table (a view has no xmin).

VERSION = "xmin::text::bigint"
SNAPSHOT = "pg_current_snapshot()::text"
# Which server answered, in the same statement (no round trip of its own): a hot standby,
# and the commit time of the last transaction its replay had reached then.
STANDBY = "pg_is_in_recovery()"
REPLAYED = "CASE WHEN pg_is_in_recovery() THEN pg_last_xact_replay_timestamp() END"


def _row_query(table: str, key_column: str) -> Any:
    from psycopg import sql

    return sql.SQL(
        "SELECT t.*, t.{xmin} AS lifecycle_xmin, {snapshot} AS lifecycle_snapshot, "
        "{standby} AS lifecycle_standby, {replayed} AS lifecycle_replayed_at "
        "FROM {table} AS t WHERE t.{key} = %s"
    ).format(
        xmin=sql.SQL(VERSION),
        snapshot=sql.SQL(SNAPSHOT),
        standby=sql.SQL(STANDBY),
        replayed=sql.SQL(REPLAYED),
        table=sql.Identifier(*table.split(".")),
        key=sql.Identifier(key_column),
    )


def _report_row(
    row: dict[str, Any] | None, key: object, status_column: str, client: str | None
) -> dict[str, Any] | None:
    if row is None:
        return None
    xmin, snapshot = row.pop("lifecycle_xmin", None), row.pop("lifecycle_snapshot", None)
    standby, replayed = row.pop("lifecycle_standby", None), row.pop("lifecycle_replayed_at", None)
    report_read(
        str(key),
        status_text(row.get(status_column)),
        xmin=xmin,
        snapshot=snapshot,
        client=client,
        standby=standby,
        replayed_at=replayed,
    )
    return row


def read_row(
    conn: Any,
    table: str,
    key: object,
    *,
    key_column: str = "id",
    status_column: str = "status",
    client: str | None = None,
) -> dict[str, Any] | None:
    """psycopg 3: the row of ``table`` whose ``key_column`` is ``key``, as a dict (None
    when there is none), its read reported with its version.

    The values are what the connection's own loaders make of them, as the application's
    own ``cursor.execute`` on ``conn`` would return them: a plain psycopg connection gives
    ``jsonb`` as dicts and lists, ``inet`` as ``ipaddress`` objects; Django's connection
    (``connection.connection``) has its own loaders, which give ``jsonb``, ``inet`` and
    ``cidr`` as ``str``. In Django, read models with ``lifecycle.client.django.read_model``
    instead: it goes through Django's cursor (its routers, ``connection.queries``, psycopg 2
    or 3) and returns the model instance with its fields converted."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_row_query(table, key_column), [key]).fetchone()
    return _report_row(row, key, status_column, client)


async def aread_row(
    conn: Any,
    table: str,
    key: object,
    *,
    key_column: str = "id",
    status_column: str = "status",
    client: str | None = None,
) -> dict[str, Any] | None:
    """``read_row`` for a psycopg ``AsyncConnection``."""
    from psycopg.rows import dict_row

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_row_query(table, key_column), [key])
        row = await cur.fetchone()
    return _report_row(row, key, status_column, client)


def _object_query(model: Any, key: object, status: str) -> Any:
    import sqlalchemy as sa

    mapper = sa.inspect(model)
    status_column = mapper.attrs[status].columns[0]
    return sa.select(
        model,
        status_column.label("lifecycle_status"),
        sa.literal_column(VERSION).label("lifecycle_xmin"),
        sa.literal_column(SNAPSHOT).label("lifecycle_snapshot"),
        sa.literal_column(STANDBY).label("lifecycle_standby"),
        sa.literal_column(REPLAYED).label("lifecycle_replayed_at"),
    ).where(mapper.primary_key[0] == key)


def _report_object(row: Any, key: object, status: str, client: str | None) -> Any:
    if row is None:
        return None
    obj, stored_status, xmin, snapshot, standby, replayed = row
    returned = status_text(getattr(obj, status, None))
    # The session may hand back an object it loaded earlier (its identity map): then what
    # the application returns is not the version this statement read, and saying which
    # version it is would be a guess.
    if returned != status_text(stored_status):
        xmin = None
    report_read(
        str(key),
        returned,
        xmin=xmin,
        snapshot=snapshot,
        client=client,
        standby=standby,
        replayed_at=replayed,
    )
    return obj


def read_object(
    session: Any, model: Any, key: object, *, status: str = "status", client: str | None = None
) -> Any:
    """SQLAlchemy ``Session``: ``session.get(model, key)``, its read reported with its
    version. ``status`` names the model's status attribute."""
    row = session.execute(_object_query(model, key, status)).first()
    return _report_object(row, key, status, client)


async def aread_object(
    session: Any, model: Any, key: object, *, status: str = "status", client: str | None = None
) -> Any:
    """``read_object`` for a SQLAlchemy ``AsyncSession``: one line in a FastAPI handler,
    ``task = await aread_object(session, Task, task_id)``."""
    row = (await session.execute(_object_query(model, key, status))).first()
    return _report_object(row, key, status, client)


def status_text(value: object) -> str | None:
    """A status as reads report it: an Enum's (Django's ``TextChoices``) value, else the
    value as text."""
    if value is None:
        return None
    return str(getattr(value, "value", value))  # an Enum's value, else the value itself
