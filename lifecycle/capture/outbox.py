"""Capture in an application's own database: install, remove and list, there.

``capture install TABLE --database URL`` puts into that database only the schema
``lifecycle_capture``: an outbox table, and one trigger function per watched table,
generated at install time for that table's columns. The function compares each column
of the old and new row directly (no row is turned into JSON to find what changed) and
writes one outbox row per committed change, in the writer's own transaction, so an event
exists if and only if the change commits. ``lifecycle.capture.follower`` copies the outbox into the
inspector's store and deletes what it stored.

Names given by the user are looked up in the catalog first; only the catalog's spelling
goes into the generated DDL, quoted by ``psycopg.sql``.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql as pgsql

from lifecycle import sql
from lifecycle.capture.trigger import (
    TRIGGER_NAME,
    CaptureError,
    WatchedTable,
    create_trigger,
    table_of,
)
from lifecycle.runtime.database import first_line

logger = logging.getLogger(__name__)
OUTBOX = sql.load("outbox")
SCHEMA = "lifecycle_capture"
CHANNEL = "lifecycle_capture"


def connect(conninfo: str, **options: Any) -> psycopg.Connection[Any]:
    """A connection to a watched database; its errors never carry the password."""
    try:
        return psycopg.connect(conninfo, connect_timeout=5, **options)
    except psycopg.Error as exc:
        raise CaptureError(f"cannot connect: {first_line(exc)}") from None


def install(
    conninfo: str,
    table: str,
    key: str,
    status: str,
    *,
    replace: bool = False,
    key_prefix: str = "",
    generic: bool = False,
) -> WatchedTable:
    """Watch ``table`` of the database at ``conninfo`` (created: schema, outbox, function).

    Installed by a superuser, the table gets a function of its own (columns compared one by
    one: the cheapest for its writers) and the event triggers that rebuild it after each
    ALTER TABLE; installed by anyone else (event triggers are a superuser's), or with
    ``generic``, it gets the generic function, which reads the row as JSON whatever its
    columns. Either way no migration can make the table's writes fail (README: migrations).
    """
    if len(key_prefix) > 100 or "\x00" in key_prefix:
        raise CaptureError("a key prefix is at most 100 characters, without NUL")
    with connect(conninfo) as conn:
        oid, schema, name = _resolve(conn, table)
        numbers = dict(conn.execute(OUTBOX["table_columns"], [oid]).fetchall())
        for role, column in (("key", key), ("status", status)):
            if column not in numbers:
                raise CaptureError(
                    f"table {schema}.{name} has no {role} column {column!r} "
                    f"(columns: {', '.join(sorted(numbers))})"
                )
        existing = conn.execute(OUTBOX["table_trigger"], [oid]).fetchone()
        if existing is not None and not replace:
            raise CaptureError(
                f"the capture trigger is already installed on {schema}.{name}; "
                "use --replace to reinstall it"
            )
        superuser, database = conn.execute(OUTBOX["is_superuser"]).fetchone()  # type: ignore[misc]
        if superuser:
            _refuse_untrusted(conn, database)
        mode = "generated" if superuser and not generic else "any"
        try:
            with conn.transaction():
                conn.execute(OUTBOX["create_schema"])
                if not conn.execute(OUTBOX["outbox_layout"]).fetchone()[0]:  # type: ignore[index]
                    raise CaptureError(
                        "this database holds an older capture schema; run `lifecycle capture "
                        "remove --all --database ...` first (it copies what is left)"
                    )
                conn.execute(OUTBOX["capture_functions"])
                _give_to_owner_role(conn, pgsql.Identifier(SCHEMA, "capture_any"))
                if superuser:
                    conn.execute(OUTBOX["event_trigger_functions"])
                    conn.execute(OUTBOX["event_triggers"])
                if existing is not None:
                    conn.execute(_drop_trigger(schema, name))
                conn.execute(
                    OUTBOX["watch"],
                    {
                        "relid": oid,
                        "key_attnum": numbers[key],
                        "status_attnum": numbers[status],
                        "key": key,
                        "status": status,
                        "prefix": key_prefix,
                        "mode": mode,
                    },
                )
                own = pgsql.Identifier(SCHEMA, f"capture_{oid}")
                if mode == "generated":
                    conn.execute(OUTBOX["generate"], [oid])
                    _give_to_owner_role(conn, own)
                    call = pgsql.SQL("{}()").format(own)
                else:
                    conn.execute(pgsql.SQL("DROP FUNCTION IF EXISTS {}()").format(own))
                    call = pgsql.SQL("{}({})").format(
                        pgsql.Identifier(SCHEMA, "capture_any"),
                        pgsql.SQL(", ").join(pgsql.Literal(v) for v in (key, status, key_prefix)),
                    )
                conn.execute(create_trigger(pgsql.Identifier(schema, name), call))
        except psycopg.Error as exc:
            raise CaptureError(f"cannot install on {schema}.{name}: {first_line(exc)}") from None
    return WatchedTable(schema, name, key, status, key_prefix=key_prefix, mode=mode)


def remove(conninfo: str, table: str) -> tuple[WatchedTable, bool]:
    """Stop watching ``table``; returns what was watched and whether it was the last table
    of that database (then nothing of ours is left there but the outbox, which the caller
    drains and drops with ``remove_all``)."""
    with connect(conninfo) as conn:
        oid, schema, name = _resolve(conn, table)
        check_trusted(conn)
        found = {(t.schema, t.table): t for t in read_watched(conn)}
        watched_table = found.get((schema, name))
        if watched_table is None:
            raise CaptureError(f"the capture trigger is not installed on {schema}.{name}")
        with conn.transaction():
            conn.execute(_drop_trigger(schema, name))
            conn.execute(
                pgsql.SQL("DROP FUNCTION IF EXISTS {}()").format(
                    pgsql.Identifier(SCHEMA, f"capture_{oid}")
                )
            )
            if _has_watched(conn):
                conn.execute(OUTBOX["unwatch"], [oid])
    return watched_table, len(found) == 1


def remove_all(conninfo: str) -> list[WatchedTable]:
    """Drop every trigger and the whole schema: nothing of ours is left in that database."""
    with connect(conninfo) as conn:
        check_trusted(conn)
        tables = read_watched(conn) if has_schema(conn) else []
        with conn.transaction():
            for t in tables:
                conn.execute(_drop_trigger(t.schema, t.table))
            conn.execute(OUTBOX["drop_schema"])
            superuser, database = conn.execute(OUTBOX["is_superuser"]).fetchone()  # type: ignore[misc]
            if superuser:
                try:
                    with conn.transaction():  # a savepoint: a role still in use elsewhere stays
                        conn.execute(_with_role(OUTBOX["drop_owner_role"], owner_role(database)))
                except psycopg.Error as exc:
                    logger.warning("kept the role %s: %s", owner_role(database), first_line(exc))
    return tables


def _refuse_untrusted(conn: psycopg.Connection[Any], database: str) -> None:
    """A superuser installs only into a capture schema that superusers own, and gives the
    functions only to an owner role nobody can act as."""
    role = {"owner_role": owner_role(database)}
    if conn.execute(OUTBOX["untrusted_owner_role"], role).fetchone() is not None:
        raise CaptureError(
            f"the role {role['owner_role']} exists, and can log in or has members: the "
            "capture functions, which every writer runs, would be theirs to alter. Drop it, "
            "or find out who made it"
        )
    check_trusted(conn)


def check_trusted(conn: psycopg.Connection[Any]) -> None:
    """Connected as a superuser, refuse a capture schema that another role owns, or owns
    something in (it made it by installing first, say): reading its tables, draining its
    outbox or running its functions would run that role's code (a view, a trigger, a
    function named like ours) with a superuser's rights."""
    superuser, database = conn.execute(OUTBOX["is_superuser"]).fetchone()  # type: ignore[misc]
    if not superuser:
        return
    owners = [
        name
        for (name,) in conn.execute(
            OUTBOX["untrusted_owners"], {"owner_role": owner_role(database)}
        ).fetchall()
    ]
    if owners:
        raise CaptureError(
            f"the schema {SCHEMA} of this database, or something in it, belongs to "
            f"{', '.join(owners)}, not to a superuser: a superuser would run that role's code "
            "here with a superuser's rights. Use that role's URL (--database), and run "
            "`lifecycle capture remove --all` with it before a superuser installs"
        )


def owner_role(database: str) -> str:
    """The role that owns a database's capture functions (cluster-wide, so named by it)."""
    return f"{database}_lifecycle_capture"[:63]


def _with_role(block: str, role: str) -> pgsql.Composed:
    return pgsql.SQL(block).format(role=pgsql.Identifier(role), role_literal=pgsql.Literal(role))


def _give_to_owner_role(conn: psycopg.Connection[Any], function: pgsql.Identifier) -> None:
    """Run as a superuser, hand the function to a role that may only insert into the
    outbox: the code every writer runs with its owner's rights can do no more. Run as
    another user (who may not make roles), the function stays that user's."""
    superuser, database = conn.execute(OUTBOX["is_superuser"]).fetchone()  # type: ignore[misc]
    if not superuser:
        return
    role = pgsql.Identifier(owner_role(database))
    conn.execute(_with_role(OUTBOX["owner_role"], owner_role(database)))
    # A new owner needs CREATE on the function's schema when it is given it: that moment only.
    conn.execute(
        pgsql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(pgsql.Identifier(SCHEMA), role)
    )
    conn.execute(pgsql.SQL("ALTER FUNCTION {}() OWNER TO {}").format(function, role))
    conn.execute(
        pgsql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(pgsql.Identifier(SCHEMA), role)
    )


def watched(conninfo: str) -> list[WatchedTable]:
    with connect(conninfo) as conn:
        check_trusted(conn)
        return read_watched(conn) if has_schema(conn) else []


def read_watched(conn: psycopg.Connection[Any]) -> list[WatchedTable]:
    if not _has_watched(conn):  # an older version's schema: its functions' comments say
        return [
            WatchedTable(schema, table, key or "?", status or "?", enabled, mode="older")
            for schema, table, key, status, enabled in conn.execute(
                OUTBOX["watched_tables_older"]
            ).fetchall()
        ]
    result = []
    for row in conn.execute(OUTBOX["watched_tables"]).fetchall():
        schema, table, enabled, mode, prefix, key, status, key_now, status_now, columns = row
        if mode == "generated":  # kept by number: a renamed column is followed
            key, status = key_now or key, status_now or status
        missing = tuple(c for c in dict.fromkeys((key, status)) if c and c not in columns)
        result.append(
            WatchedTable(
                schema,
                table,
                key or "?",
                status or "?",
                enabled,
                missing,
                key_prefix=prefix,
                mode=mode or "older",  # no row in watched: installed before it existed
            )
        )
    return result


def _has_watched(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('lifecycle_capture.watched') IS NOT NULL").fetchone()
    return bool(row and row[0])


def has_schema(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(OUTBOX["schema_exists"]).fetchone()
    return bool(row and row[0])


def _resolve(conn: psycopg.Connection[Any], name: str) -> tuple[int, str, str]:
    if not name or "\x00" in name:
        raise CaptureError(f"no table named {name!r}")
    try:
        row = conn.execute(OUTBOX["resolve_table"], [name]).fetchone()
    except psycopg.Error as exc:  # e.g. too many dots, or a cross-database reference
        conn.rollback()
        raise CaptureError(f"no table named {name!r}: {first_line(exc)}") from None
    return table_of(name, row)


def _drop_trigger(schema: str, table: str) -> pgsql.Composed:
    return pgsql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
        pgsql.Identifier(TRIGGER_NAME), pgsql.Identifier(schema, table)
    )
