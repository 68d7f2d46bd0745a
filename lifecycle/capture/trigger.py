"""Capture: install, remove and list the capture trigger on any table, checked against the
catalog.

The trigger function ``lifecycle_capture()`` (migrations 0002 and 0005) is generic: a
watched table gets ``CREATE TRIGGER lifecycle_capture ... EXECUTE FUNCTION
lifecycle_capture('<key>', '<status>')``. Names given by the user are looked up in
``pg_class``/``pg_attribute`` first (``sql/capture.sql``); only the catalog's own spelling
goes into the DDL, quoted with ``psycopg.sql``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection, transaction
from psycopg import sql as pgsql

from lifecycle import sql

TRIGGER_NAME = "lifecycle_capture"
TABLE_KINDS = {"r": "table", "p": "partitioned table"}
RELKIND_NAMES = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "i": "an index",
    "I": "an index",
    "S": "a sequence",
    "c": "a composite type",
    "t": "a TOAST table",
}

CATALOG = sql.load("capture")


class CaptureError(Exception):
    """A request the catalog refuses; the text says why, for the user."""


@dataclass(frozen=True)
class WatchedTable:
    schema: str
    table: str
    key: str
    status: str
    enabled: bool = True
    missing_columns: tuple[str, ...] = ()  # columns the trigger names that are gone
    key_prefix: str = ""  # put before each key (capture install --key-prefix)
    # How an application's table is captured: "generated" (its own function, rebuilt after
    # each ALTER TABLE), "any" (the generic function), "older" (installed by a version
    # before either: its function does not follow migrations) or "" (the inspector's own
    # database).
    mode: str = ""

    @property
    def broken(self) -> str:
        """What is wrong with its capture, for a person ("" when nothing is)."""
        if self.mode == "older":
            return (
                "installed by an older version, whose function does not follow migrations: a "
                "dropped or renamed column would make every write of the table fail"
            )
        if not self.missing_columns:
            return ""
        role = {self.key: "key", self.status: "status"}
        gone = " and ".join(f"its {role[c]} column {c!r}" for c in self.missing_columns)
        effect = (
            "its changes are not captured"
            if self.key in self.missing_columns
            else "its changes are captured without their status"
        )
        return f"{gone} {'are' if len(self.missing_columns) > 1 else 'is'} gone: {effect}"

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def sql_name(self) -> str:
        """The name as ``capture install`` takes it: SQL's, where ``public.Jobs`` is
        ``public.jobs`` and the table ``Jobs`` is ``public."Jobs"``."""
        return ".".join(_identifier(part) for part in (self.schema, self.table))


def _identifier(name: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def printable(text: str) -> str:
    """``text`` with each character that is not printable (a line break, a tab, a
    terminal's escape, Unicode's line separators) written as its escape: a table or column
    name, which may hold any of them, can then neither start a line of its own nor pass for
    what follows it."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# How the follower records a broken table for the home page: what is wrong, then this, then
# the command that mends it (each made printable, so neither holds it).
PROBLEM_SEPARATOR = "\t"


def problem_line(table: WatchedTable, database: str | None) -> str:
    """One broken table, as the follower records it (``database`` as it may be shown)."""
    what = printable(f"{table.name}: {table.broken}")
    return f"{what}{PROBLEM_SEPARATOR}{printable(mend_command(table, database))}"


def mend_command(table: WatchedTable, database: str | None) -> str:
    """The command that reinstalls a broken table's capture: the column a migration took
    away to be named by whoever migrated it; ``database`` as it may be shown (redacted)."""
    key = "KEY_COLUMN" if table.key in table.missing_columns else table.key
    status = "STATUS_COLUMN" if table.status in table.missing_columns else table.status
    prefix = f" --key-prefix {shlex.quote(table.key_prefix)}" if table.key_prefix else ""
    where = f" --database {shlex.quote(database)}" if database else ""
    return (
        f"python manage.py lifecycle capture install {shlex.quote(table.sql_name)} "
        f"--key {shlex.quote(key)} --status {shlex.quote(status)}{prefix}{where} --replace"
    )


@dataclass(frozen=True)
class _Table:
    oid: int
    schema: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def identifier(self) -> pgsql.Identifier:
        return pgsql.Identifier(self.schema, self.table)


def install(table: str, key: str, status: str, *, replace: bool = False) -> WatchedTable:
    """Watch ``table`` (``name`` or ``schema.name``) with ``key``/``status`` columns."""
    with connection.cursor() as cur:
        found = _resolve(cur, table)
        columns = _columns(cur, found.oid)
        for role, column in (("key", key), ("status", status)):
            if column not in columns:
                raise CaptureError(
                    f"table {found.name} has no {role} column {column!r} "
                    f"(columns: {', '.join(columns)})"
                )
        cur.execute(CATALOG["capture_function"])
        function = cur.fetchone()
        if function is None:
            raise CaptureError(
                "the trigger function lifecycle_capture() is missing: run `manage.py migrate`"
            )
        existing = _trigger(cur, found)
        if existing is not None and not replace:
            old_key, old_status, inherited = existing
            where = " (inherited from its partitioned parent)" if inherited else ""
            raise CaptureError(
                f"the capture trigger is already installed on {found.name}{where} "
                f"with key {old_key!r} and status {old_status!r}; use --replace to reinstall it"
            )
        if existing is not None and existing[2]:
            raise CaptureError(
                f"the capture trigger on {found.name} is inherited from its partitioned parent; "
                "replace it on the parent"
            )
        create = create_trigger(
            found.identifier,
            pgsql.SQL("{function}({key}, {status})").format(
                function=pgsql.Identifier(function[0], "lifecycle_capture"),
                key=pgsql.Literal(key),
                status=pgsql.Literal(status),
            ),
        )
        try:
            with transaction.atomic():
                if existing is not None:
                    cur.execute(_drop_statement(found))
                cur.execute(_render(create))
        except DatabaseError as exc:  # e.g. another session installed it meanwhile
            raise CaptureError(f"cannot install on {found.name}: {str(exc).strip()}") from None
    return WatchedTable(found.schema, found.table, key, status)


def remove(table: str) -> WatchedTable:
    """Stop watching ``table``; returns what the trigger was watching."""
    with connection.cursor() as cur:
        found = _resolve(cur, table)
        existing = _trigger(cur, found)
        if existing is None:
            raise CaptureError(f"the capture trigger is not installed on {found.name}")
        key, status, inherited = existing
        if inherited:
            raise CaptureError(
                f"the capture trigger on {found.name} is inherited from its partitioned parent; "
                "remove it from the parent"
            )
        cur.execute(_drop_statement(found))
    return WatchedTable(found.schema, found.table, key, status)


def watched() -> list[WatchedTable]:
    """Every table carrying the capture trigger, with the columns it names."""
    with connection.cursor() as cur:
        cur.execute(CATALOG["watched_tables"], [TRIGGER_NAME])
        result = []
        for schema, table, tgargs, nargs, enabled, columns in cur.fetchall():
            key, status = (_args(tgargs, nargs) + [None, None])[:2]
            missing = tuple(c or "?" for c in (key, status) if c not in columns)
            result.append(WatchedTable(schema, table, key or "?", status or "?", enabled, missing))
    return result


def _resolve(cur: Any, name: str) -> _Table:
    if not name or "\x00" in name:
        raise CaptureError(f"no table named {name!r}")
    try:
        with transaction.atomic():
            cur.execute(CATALOG["resolve_table"], [name])
            row = cur.fetchone()
    except DatabaseError as exc:  # e.g. too many dots, or a cross-database reference
        raise CaptureError(f"no table named {name!r}: {str(exc).strip()}") from None
    return _Table(*table_of(name, row))


def table_of(name: str, row: tuple[Any, ...] | None) -> tuple[int, str, str]:
    """The ``resolve_table`` row of ``name`` as (oid, schema, table), or why it is none."""
    if row is None:
        raise CaptureError(f"no table named {name!r}")
    oid, schema, table, relkind = row
    if relkind not in TABLE_KINDS:
        kind = RELKIND_NAMES.get(relkind, f"a relation of kind {relkind!r}")
        raise CaptureError(f"{schema}.{table} is {kind}, not a table")
    return oid, schema, table


def _columns(cur: Any, oid: int) -> list[str]:
    cur.execute(CATALOG["table_columns"], [oid])
    return [name for (name,) in cur.fetchall()]


def _trigger(cur: Any, table: _Table) -> tuple[str, str, bool] | None:
    cur.execute(CATALOG["table_trigger"], [table.oid, TRIGGER_NAME])
    row = cur.fetchone()
    if row is None:
        return None
    tgargs, nargs, inherited = row
    key, status = (_args(tgargs, nargs) + ["?", "?"])[:2]
    return key, status, inherited


def _args(tgargs: bytes | memoryview, nargs: int) -> list[str]:
    """pg_trigger.tgargs: the trigger's arguments, each ended by a NUL byte."""
    return bytes(tgargs).decode().split("\x00")[:nargs]


def _drop_statement(table: _Table) -> str:
    query = pgsql.SQL("DROP TRIGGER {trigger} ON {table}").format(
        trigger=pgsql.Identifier(TRIGGER_NAME), table=table.identifier
    )
    return _render(query)


def create_trigger(table: pgsql.Composable, call: pgsql.Composable) -> pgsql.Composed:
    """The capture trigger on ``table``: after every row's insert, update or delete, ``call``
    (a trigger function with its arguments). The inspector's own database and an
    application's (``capture.outbox``) install the same trigger, each with its function."""
    return pgsql.SQL(
        "CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION {call}"
    ).format(trigger=pgsql.Identifier(TRIGGER_NAME), table=table, call=call)


def _render(query: pgsql.Composable) -> str:
    """Composed SQL as text, rendered by the psycopg connection under Django's."""
    connection.ensure_connection()
    return query.as_string(connection.connection)
