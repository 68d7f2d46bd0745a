"""Connection strings: Django's database outside the ORM, and how any database's address is
shown (never with its password); and the row-by-row insert that both writers of the event
table (the ingestor, the store) fall back to.

It reads ``connections["default"].settings_dict`` at call time, not ``settings.DATABASES``,
because test runners switch NAME to the test database at runtime.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from asgiref.sync import sync_to_async
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Django's OPTIONS that are not libpq connection parameters.
DJANGO_ONLY_OPTIONS = {
    "isolation_level",
    "server_side_binding",
    "assume_role",
    "pool",
    "cursor_factory",
}


def conninfo(*, application_name: str | None = None, dbname: str | None = None) -> str:
    """Django's default database as a conninfo; ``application_name`` (what the capture
    trigger records as the writer) and ``dbname`` replace the settings' when given."""
    from django.db import connections

    db = connections["default"].settings_dict
    params: dict[str, Any] = {
        key: str(value)
        for key, value in (db.get("OPTIONS") or {}).items()
        if key not in DJANGO_ONLY_OPTIONS and isinstance(value, str | int)
    }
    params.update(
        dbname=dbname or db.get("NAME"),
        user=db.get("USER"),
        password=db.get("PASSWORD"),
        host=db.get("HOST"),
        port=db.get("PORT"),
    )
    if application_name:
        params["application_name"] = application_name
    return make_conninfo(**{key: value for key, value in params.items() if value})


def noticing_loss(*, idle: int, interval: int, user_timeout: float) -> dict[str, Any]:
    """psycopg.connect's options for the client's side of a lost network (over TCP; a local
    socket needs none): a silent peer is given up after ``idle + 2 * interval`` seconds of
    unanswered keepalives, and data left unacknowledged after ``user_timeout`` seconds.
    pg_terminate_backend and a restart are noticed at once anyway."""
    return {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": 2,
        "tcp_user_timeout": int(user_timeout * 1000),
    }


def first_line(exc: BaseException) -> str:
    """An error's message as logs and answers show it: its first line (libpq's never
    repeat a password)."""
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def insert_each(
    cursor: Any,
    query: Any,
    rows: Sequence[Sequence[Any]],
    *,
    savepoint: Callable[[], AbstractContextManager[Any]],
    refused_by: tuple[type[BaseException], ...],
) -> tuple[int, list[tuple[int, BaseException]]]:
    """Insert ``rows`` one at a time, each in a ``savepoint`` of the caller's transaction, so
    a row the database refuses (raises one of ``refused_by``) spoils only itself. Returns
    how many rows were stored, and the index and error of each refused one.

    The ingestor (a psycopg connection) and the store (Django's) take this way when a
    batch failed as a whole; each says in its own words what was refused."""
    stored, refused = 0, []
    for i, row in enumerate(rows):
        try:
            with savepoint():
                cursor.execute(query, row)
                stored += max(cursor.rowcount, 0)
        except refused_by as exc:
            refused.append((i, exc))
    return stored, refused


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A database error's whole text on one line, cut at ``limit``: for a log line."""
    return " ".join(str(exc).split())[:limit]


def redact(url: str) -> str:
    """A database URL or conninfo as it may be shown: any password replaced by ``***``."""
    try:
        params = conninfo_to_dict(url)
    except Exception:
        return "(a database address that does not parse)"
    if "password" in params:
        params["password"] = "***"
    as_conninfo = make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
    if "://" not in url:
        return as_conninfo
    parts = urlsplit(url)
    if parts.password is None:
        return url if "password=" not in parts.query else as_conninfo
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc, query=""))


def display_name(url: str) -> str:
    """``dbname@host:port``: how a watched database is named unless it is given a name."""
    params = conninfo_to_dict(url)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{params.get('dbname') or params.get('user') or '?'}@{host}:{port}"


T = TypeVar("T")


def off_thread(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``fn`` for an async view, run in a worker thread (``thread_sensitive=False``: not
    queued behind Django's one thread for sync work) with a connection of its own that is
    closed when it returns. Worker threads are reused and see no request's end: a
    connection they kept would be dead after a PostgreSQL restart, and every later call
    in that thread would fail with it."""

    @functools.wraps(fn)
    def with_own_connection(*args: Any, **kwargs: Any) -> T:
        from django.db import close_old_connections, connection

        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    return sync_to_async(with_own_connection, thread_sensitive=False)
