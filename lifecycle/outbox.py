"""Capture in an application's own database: install, remove and list, there.

``capture install TABLE --database URL`` puts into that database only the schema
``lifecycle_capture``: an outbox table, and one trigger function per watched table,
generated at install time for that table's columns. The function compares each column
of the old and new row directly (no row is turned into JSON to find what changed) and
writes one outbox row per committed change, in the writer's own transaction, so an event
exists if and only if the change commits. ``lifecycle.follow`` copies the outbox into the
inspector's store and deletes what it stored.

Names given by the user are looked up in the catalog first; only the catalog's spelling
goes into the generated DDL, quoted by ``psycopg.sql``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from psycopg import sql as pgsql

from lifecycle import sql
from lifecycle.capture import TRIGGER_NAME, CaptureError, WatchedTable, table_of
from lifecycle.database import first_line

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
    conninfo: str, table: str, key: str, status: str, *, replace: bool = False
) -> WatchedTable:
    """Watch ``table`` of the database at ``conninfo`` (created: schema, outbox, function)."""
    with connect(conninfo) as conn:
        oid, schema, name = _resolve(conn, table)
        columns = [c for (c,) in conn.execute(OUTBOX["table_columns"], [oid]).fetchall()]
        for role, column in (("key", key), ("status", status)):
            if column not in columns:
                raise CaptureError(
                    f"table {schema}.{name} has no {role} column {column!r} "
                    f"(columns: {', '.join(sorted(columns))})"
                )
        existing = conn.execute(OUTBOX["table_trigger"], [oid]).fetchone()
        if existing is not None and not replace:
            raise CaptureError(
                f"the capture trigger is already installed on {schema}.{name}; "
                "use --replace to reinstall it"
            )
        try:
            with conn.transaction():
                conn.execute(OUTBOX["create_schema"])
                if not conn.execute(OUTBOX["outbox_layout"]).fetchone()[0]:  # type: ignore[index]
                    raise CaptureError(
                        "this database holds an older capture schema; run `lifecycle capture "
                        "remove --all --database ...` first (it copies what is left)"
                    )
                if existing is not None:
                    conn.execute(_drop_trigger(schema, name))
                function = pgsql.Identifier(SCHEMA, f"capture_{oid}")
                conn.execute(capture_function(function, columns, key, status))
                _give_to_owner_role(conn, function)
                conn.execute(
                    pgsql.SQL("COMMENT ON FUNCTION {}() IS {}").format(
                        function,
                        pgsql.Literal(
                            json.dumps({"table": f"{schema}.{name}", "key": key, "status": status})
                        ),
                    )
                )
                conn.execute(
                    pgsql.SQL(
                        "CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} "
                        "FOR EACH ROW EXECUTE FUNCTION {function}()"
                    ).format(
                        trigger=pgsql.Identifier(TRIGGER_NAME),
                        table=pgsql.Identifier(schema, name),
                        function=function,
                    )
                )
        except psycopg.Error as exc:
            raise CaptureError(f"cannot install on {schema}.{name}: {first_line(exc)}") from None
    return WatchedTable(schema, name, key, status)


def capture_function(
    function: pgsql.Identifier, columns: list[str], key: str, status: str
) -> pgsql.Composed:
    """The trigger function of one table: its columns compared one by one, in name order
    (the order of a db event's ``changed``), new values cut at 500 characters."""
    cols = sorted(columns)
    ident = pgsql.Identifier
    compare = pgsql.SQL("\n").join(
        pgsql.SQL(
            "        IF NEW.{c} IS DISTINCT FROM OLD.{c} THEN\n"
            "            changed := changed || {name}::text;\n"
            "            vals := vals || jsonb_build_object(\n"
            "                {name}, lifecycle_capture.cut(to_jsonb(NEW.{c})));\n"
            "        END IF;"
        ).format(c=ident(c), name=pgsql.Literal(c))
        for c in cols
    )
    names = pgsql.SQL("ARRAY[{}]::text[]").format(
        pgsql.SQL(", ").join(pgsql.Literal(c) for c in cols)
    )
    values = pgsql.SQL("jsonb_build_object({})").format(
        pgsql.SQL(", ").join(
            pgsql.SQL("{}, lifecycle_capture.cut(to_jsonb(NEW.{}))").format(
                pgsql.Literal(c), ident(c)
            )
            for c in cols
        )
    )
    return pgsql.SQL(
        """CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
-- Generated by `lifecycle capture install` for one table; its trigger is lifecycle_capture.
DECLARE
    changed text[];
    vals jsonb;
    row_key text;
    row_status text;
    sent text;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        changed := '{{}}';
        vals := '{{}}';
{compare}
        IF cardinality(changed) = 0 THEN
            RETURN NULL;  -- an UPDATE that changed nothing is not a change
        END IF;
        row_key := NEW.{key}::text;
        row_status := NEW.{status}::text;
    ELSIF TG_OP = 'INSERT' THEN
        changed := {names};
        vals := {values};
        row_key := NEW.{key}::text;
        row_status := NEW.{status}::text;
    ELSE
        changed := {names};
        vals := '{{}}';
        row_key := OLD.{key}::text;
        row_status := OLD.{status}::text;
    END IF;
    -- Instrumentation must never fail the writer: a NULL key is recorded, not refused
    -- (and an over-long status is cut when the event is stored).
    INSERT INTO lifecycle_capture.outbox (
        task_key, kind, status, old_status, at, txid, table_name, changed, changed_values,
        application_name, pid, db_user)
    VALUES (
        coalesce(row_key, '(null)'),
        lower(TG_OP),
        row_status,
        CASE WHEN TG_OP <> 'INSERT' THEN OLD.{status}::text END,
        clock_timestamp(),
        pg_current_xact_id()::text::bigint,
        TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
        changed,
        vals,
        current_setting('application_name'),
        pg_backend_pid(),
        session_user
    );
    -- An assignment, not PERFORM: PL/pgSQL evaluates it without starting an executor.
    sent := pg_notify({channel}, '');
    RETURN NULL;
END
$fn$"""
    ).format(
        function=function,
        compare=compare,
        names=names,
        values=values,
        key=ident(key),
        status=ident(status),
        channel=pgsql.Literal(CHANNEL),
    )


def remove(conninfo: str, table: str) -> tuple[WatchedTable, bool]:
    """Stop watching ``table``; returns what was watched and whether it was the last table
    of that database (then nothing of ours is left there but the outbox, which the caller
    drains and drops with ``remove_all``)."""
    with connect(conninfo) as conn:
        oid, schema, name = _resolve(conn, table)
        found = {(t.schema, t.table): t for t in _watched(conn)}
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
    return watched_table, len(found) == 1


def remove_all(conninfo: str) -> list[WatchedTable]:
    """Drop every trigger and the whole schema: nothing of ours is left in that database."""
    with connect(conninfo) as conn:
        tables = _watched(conn) if has_schema(conn) else []
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
        return _watched(conn) if has_schema(conn) else []


def _watched(conn: psycopg.Connection[Any]) -> list[WatchedTable]:
    result = []
    for schema, table, _, comment, enabled in conn.execute(OUTBOX["watched_tables"]).fetchall():
        meta = json.loads(comment) if comment else {}
        result.append(
            WatchedTable(schema, table, meta.get("key", "?"), meta.get("status", "?"), enabled)
        )
    return result


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
