"""Reads an API serves, reported as ``api`` events: the status returned and, where the API
can say it, the row version it read (``xmin``) and its snapshot (``pg_current_snapshot()``).

Reporting never fails a request, and holds it only when asked: by default the publisher
only queues; ``confirm=`` seconds waits (at most that long) until RabbitMQ has the event,
so a response the client got implies its read was recorded even if the process is killed
right after (the lab does, with 50 ms).
"""

from __future__ import annotations

import logging
from typing import Any

from lifecycle.client import messages
from lifecycle.client.context import attempt_fields
from lifecycle.client.publisher import get_publisher

logger = logging.getLogger(__name__)


def report_read(
    task: str,
    status: str | None,
    *,
    xmin: int | None = None,
    snapshot: str | None = None,
    client: str | None = None,
    path: str | None = None,
    http_status: int = 200,
    confirm: float = 0.0,
) -> None:
    """Publish one read of ``task`` that returned ``status``; never raises. ``confirm``:
    wait up to that many seconds for RabbitMQ to confirm it (0: never wait)."""
    try:
        publisher = get_publisher()
        publisher.publish(
            messages.make_message(
                source="api",
                kind="read",
                task=str(task),
                status=status,
                body={
                    "xmin": xmin,
                    "snapshot": snapshot,
                    "client": client,
                    "path": path,
                    "http_status": http_status,
                    **attempt_fields(),  # a read made by a worker's attempt names it
                },
            )
        )
        if confirm > 0:
            publisher.flush(timeout=confirm)
    except Exception:  # instrumentation must never break the observed API
        logger.debug("could not report a read of %s", task, exc_info=True)


# -- reads that know their version ----------------------------------------------------------
#
# Each helper is the application's own read of one row, with the row's version (``xmin``) and
# the reading transaction's snapshot selected in the same statement, reported as it returns.
# The read itself behaves (and fails) as the application's query would; only the report is
# guarded. The table must be a table (a view has no xmin).

VERSION = "xmin::text::bigint"
SNAPSHOT = "pg_current_snapshot()::text"


def _row_query(table: str, key_column: str) -> Any:
    from psycopg import sql

    return sql.SQL(
        "SELECT t.*, t.{xmin} AS lifecycle_xmin, {snapshot} AS lifecycle_snapshot "
        "FROM {table} AS t WHERE t.{key} = %s"
    ).format(
        xmin=sql.SQL(VERSION),
        snapshot=sql.SQL(SNAPSHOT),
        table=sql.Identifier(*table.split(".")),
        key=sql.Identifier(key_column),
    )


def _report_row(
    row: dict[str, Any] | None, key: object, status_column: str, client: str | None
) -> dict[str, Any] | None:
    if row is None:
        return None
    xmin, snapshot = row.pop("lifecycle_xmin", None), row.pop("lifecycle_snapshot", None)
    report_read(
        str(key), _text(row.get(status_column)), xmin=xmin, snapshot=snapshot, client=client
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
    """psycopg: the row of ``table`` whose ``key_column`` is ``key``, as a dict (None when
    there is none), its read reported with its version."""
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
    ).where(mapper.primary_key[0] == key)


def _report_object(row: Any, key: object, status: str, client: str | None) -> Any:
    if row is None:
        return None
    obj, stored_status, xmin, snapshot = row
    returned = _text(getattr(obj, status, None))
    # The session may hand back an object it loaded earlier (its identity map): then what
    # the application returns is not the version this statement read, and saying which
    # version it is would be a guess.
    if returned != _text(stored_status):
        xmin = None
    report_read(str(key), returned, xmin=xmin, snapshot=snapshot, client=client)
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


def _text(value: object) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))  # an Enum's value, else the value itself
