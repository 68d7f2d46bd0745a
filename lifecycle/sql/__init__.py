"""The engine's SQL: named blocks in ``.sql`` files, loaded by name.

A file holds blocks that each start with a header line ``-- name --``; comment lines right
after the header describe the block and are dropped. Code refers to a block by its name::

    STORE = sql.load("store")            # lifecycle/sql/store.sql
    cursor.execute(STORE["task_events"], [key])

Migrations read frozen copies of their own (``<app>/migrations/sql/<migration>.sql``) with
``sql.migration(app_dir, name)``, so that editing a live file never changes what an old
migration did.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import LiteralString, cast

HERE = Path(__file__).resolve().parent
BLOCK_HEADER = re.compile(r"(?:\n|^)-- ([a-z0-9_]+) --\n(?:-- .*\n)*", re.MULTILINE)


class SQLFileError(ValueError):
    """A .sql file that does not parse into named blocks; the text says where."""


def parse(text: str, origin: str = "<sql>") -> dict[str, LiteralString]:
    """Split a file's text into its named blocks (the text before the first is its header)."""
    parts = BLOCK_HEADER.split(text)
    blocks: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise SQLFileError(f"{origin}: block {name!r} is defined twice")
        if not body.strip():
            raise SQLFileError(f"{origin}: block {name!r} is empty")
        blocks[name] = cast(LiteralString, body.strip())
    if not blocks:
        raise SQLFileError(f"{origin}: no block (a block starts with a line '-- name --')")
    return blocks


@functools.cache
def read(path: Path) -> dict[str, LiteralString]:
    """The blocks of one ``.sql`` file, by name."""
    return parse(path.read_text(encoding="utf-8"), str(path))


def load(name: str) -> dict[str, LiteralString]:
    """The blocks of ``lifecycle/sql/<name>.sql``."""
    return read(HERE / f"{name}.sql")


def migration(app_dir: Path, name: str) -> dict[str, LiteralString]:
    """The frozen SQL of migration ``name`` of the app in ``app_dir``."""
    return read(app_dir / "migrations" / "sql" / f"{name}.sql")
