"""SQL lives in .sql files as named blocks; every file of the tree parses, and every block
that returns events selects exactly what ``EventRecord.from_row`` maps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lifecycle import sql
from lifecycle.events import EventRecord

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SQL_FILES = sorted((ROOT / "lifecycle").rglob("*.sql"))
RECORD_COLUMNS = (
    "id, source, kind, task_key, status, at::text, received_at::text, txid, body::text, uuid::text"
)


def test_a_file_splits_into_its_named_blocks_without_their_descriptions() -> None:
    # Given a file with a header, two blocks, and a description under the first
    text = (
        "-- what this file is\n\n"
        "-- first --\n-- says what it does\nSELECT 1\n\n"
        "-- second --\nSELECT 2\n"
    )
    # When it is parsed
    blocks = sql.parse(text)
    # Then each block is its statement alone
    assert blocks == {"first": "SELECT 1", "second": "SELECT 2"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-- a --\nSELECT 1\n-- a --\nSELECT 2\n", "defined twice"),
        ("-- a --\n-- only a description\n\n-- b --\nSELECT 1\n", "'a' is empty"),
        ("SELECT 1\n", "no block"),
    ],
)
def test_a_malformed_file_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(sql.SQLFileError, match=reason):
        sql.parse(text, "broken.sql")


def test_every_sql_file_of_the_tree_parses() -> None:
    assert len(SQL_FILES) >= 8
    for path in SQL_FILES:
        assert sql.read(path), path


def test_the_engine_loads_its_files_by_name() -> None:
    assert "task_events" in sql.load("store")
    assert {"fetch", "start"} <= set(sql.load("feed"))


def test_blocks_that_return_events_select_what_from_row_maps() -> None:
    store, feed = sql.load("store"), sql.load("feed")
    for name in ("task_events", "event", "events_by_id"):
        assert RECORD_COLUMNS in " ".join(store[name].split()), name
    fetch = " ".join(feed["fetch"].split())
    assert re.sub(r"\be\.", "", fetch).count(RECORD_COLUMNS) == 1
    # And from_row reads those ten columns, in that order
    row = (1, "db", "update", "k", "RUNNING", "2026-12-01 10:00:00+00", None, 7, '{"a": 1}', "u")
    record = EventRecord.from_row(row)
    assert (record.id, record.task_key, record.txid, record.body, record.uuid) == (
        1,
        "k",
        7,
        {"a": 1},
        "u",
    )
    assert record.at is not None and record.at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_migrations_read_frozen_copies_that_match_what_they_run() -> None:
    migration = sql.migration(ROOT / "lifecycle", "0005_cheaper_capture")
    assert "CREATE OR REPLACE FUNCTION lifecycle_capture()" in migration["capture_function"]
    assert "SECURITY DEFINER" in migration["capture_function"]
