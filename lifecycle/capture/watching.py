"""What is watched, wherever it lives: ``capture`` for the inspector's own database,
``outbox`` for an application's, with the databases remembered in
``lifecycle_watched_database`` so that ``make run`` follows them after a restart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from django.db import connection

from lifecycle import sql
from lifecycle.capture import outbox, trigger
from lifecycle.capture.follower import copy_outbox
from lifecycle.capture.trigger import CaptureError, WatchedTable
from lifecycle.models import WatchedDatabase
from lifecycle.runtime.database import conninfo, display_name, redact

FOLLOW = sql.load("follow")
OWN = "the inspector's database"


def install(
    table: str,
    key: str,
    status: str,
    *,
    database: str | None = None,
    name: str | None = None,
    replace: bool = False,
    key_prefix: str = "",
) -> tuple[str, WatchedTable]:
    """Watch ``table``; returns where (a name to show) and what."""
    if database is None:
        if key_prefix:
            raise CaptureError(
                "--key-prefix is for an application's database (--database): the inspector's "
                "own tables are the lab's"
            )
        return OWN, trigger.install(table, key, status, replace=replace)
    name = name or _name_of(database)
    known = WatchedDatabase.objects.filter(name=name).first()
    if known is not None and known.url != database:
        raise CaptureError(
            f"another database is already watched as {name!r} ({redact(known.url)}); "
            "give this one a --name of its own"
        )
    watched = outbox.install(database, table, key, status, replace=replace, key_prefix=key_prefix)
    WatchedDatabase.objects.get_or_create(name=name, defaults={"url": database})
    return name, watched


def remove(
    table: str | None, *, database: str | None = None
) -> tuple[list[tuple[str, WatchedTable]], bool]:
    """Stop watching ``table`` (every table of ``database`` when ``table`` is None).

    When an application's database has no watched table left, its outbox is copied into
    the store one last time and the capture schema dropped: nothing of ours is left there.
    Returns what was removed and whether the database was cleaned so.
    """
    if database is None:
        if table is None:
            raise CaptureError("say which table, or which --database to remove everything from")
        return [(OWN, trigger.remove(table))], False
    name = _name_of(database)
    if table is not None:
        removed, last = outbox.remove(database, table)
        if not last:
            return [(name, removed)], False
        tables = [removed]
    else:
        tables = []
    _drain(database, name)
    tables += outbox.remove_all(database)
    WatchedDatabase.objects.filter(url=database).delete()
    return [(name, t) for t in tables], True


@dataclass(frozen=True)
class Listed:
    database: str
    address: str
    table: WatchedTable | None
    events: int = 0
    last_event: datetime | None = None
    problem: str = ""

    def line(self) -> str:
        if self.table is None:
            return f"{self.database} ({self.address}): {self.problem or 'no table watched'}"
        t = self.table
        notes = [] if t.enabled else ["disabled"]
        if t.broken:
            notes.append(f"BROKEN: {t.broken}; mend it with: {self.mend()}")
        if t.mode == "any":
            notes.append("generic function")
        last = self.last_event.isoformat(timespec="seconds") if self.last_event else "never"
        suffix = f"  ({'; '.join(notes)})" if notes else ""
        prefix = f"  key-prefix={t.key_prefix!r}" if t.key_prefix else ""
        # printable: a name's line break or terminal escape is shown, not obeyed
        return trigger.printable(
            f"{self.database} ({self.address})  {t.name}  key={t.key}  status={t.status}"
            f"{prefix}  events={self.events}  last={last}{suffix}"
        )

    def mend(self) -> str:
        assert self.table is not None
        return trigger.mend_command(self.table, None if self.database == OWN else self.address)


def listing() -> list[Listed]:
    """Every watched table of every database, with its event count and newest event's time."""
    with connection.cursor() as cursor:
        cursor.execute(FOLLOW["table_events"])
        counts = {(db, table): (n, last) for db, table, n, last in cursor.fetchall()}
    rows = [
        Listed(OWN, "DATABASE_URL", t, *counts.get(("", t.name), (0, None)))
        for t in trigger.watched()
    ]
    for db in WatchedDatabase.objects.all():
        try:
            tables = outbox.watched(db.url)
        except CaptureError as exc:
            rows.append(Listed(db.name, redact(db.url), None, problem=str(exc)))
            continue
        if not tables:
            rows.append(Listed(db.name, redact(db.url), None))
        rows += [
            Listed(db.name, redact(db.url), t, *counts.get((db.name, t.name), (0, None)))
            for t in tables
        ]
    return rows


def _name_of(database: str) -> str:
    known = WatchedDatabase.objects.filter(url=database).first()
    if known is not None:
        return known.name
    try:
        return display_name(database)
    except psycopg.ProgrammingError:
        raise CaptureError(f"not a database address: {redact(database)}") from None


def _drain(database: str, name: str) -> None:
    """Copy what the outbox still holds into the store (it is about to be dropped)."""
    with (
        outbox.connect(database, autocommit=True) as watched,
        psycopg.connect(conninfo(application_name="lifecycle-capture"), autocommit=True) as store,
    ):
        outbox.check_trusted(watched)
        if outbox.has_schema(watched):
            copy_outbox(watched, store, name)
