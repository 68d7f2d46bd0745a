"""The capture's NOTIFY, and the cheaper capture function (migration 0005), on real PostgreSQL.

Each event row is announced once, with its id, whoever inserted it: the capture trigger in
a writer's transaction, or the ingestor at depth 0. And the 0005 function writes exactly
the events the 0002 function wrote, which is the contract the rest of the app reads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from bench.capture import capture_copy
from lifecycle import sql as lifecycle_sql
from lifecycle.events import NOTIFY_CHANNEL
from lifecycle.ingest import INGEST
from tests.services import require_postgres

require_postgres()

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHANNEL = NOTIFY_CHANNEL
APP = lifecycle_sql.HERE.parent
SQL_0002 = lifecycle_sql.migration(APP, "0002_capture_trigger")  # the frozen files the
SQL_0005 = lifecycle_sql.migration(APP, "0005_cheaper_capture")  # migrations run


@pytest.fixture
def listener(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    """A session of its own that LISTENs, like the live feed's."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield conn


def heard(listener: psycopg.Connection[Any], quiet: float = 0.5) -> list[str]:
    """The payloads delivered so far, waiting until none came for ``quiet`` seconds."""
    payloads: list[str] = []
    while True:
        batch = [n.payload for n in listener.notifies(timeout=quiet) if n.channel == CHANNEL]
        if not batch:
            return payloads
        payloads += batch


def event_ids(reader: psycopg.Connection[Any], key: str) -> list[int]:
    rows = reader.execute(
        "SELECT id FROM lifecycle_event WHERE task_key = %s ORDER BY id", [key]
    ).fetchall()
    return [r[0] for r in rows]


def last_id(reader: psycopg.Connection[Any]) -> int:
    row = reader.execute("SELECT coalesce(max(id), 0) FROM lifecycle_event").fetchone()
    assert row is not None
    return row[0]


def about(payloads: list[str], ids: list[int]) -> list[str]:
    """The payloads that name one of ``ids``, or that are not an id at all."""
    wanted = {str(i) for i in ids}
    return [p for p in payloads if p in wanted or not p.isdigit()]


def after(payloads: list[str], last: int) -> list[str]:
    """The payloads that name an id above ``last``, or that are not an id at all."""
    return [p for p in payloads if not p.isdigit() or int(p) > last]


INSERT_TASK = """
INSERT INTO lab_task (id, config, status, error, executions, created_at, updated_at)
VALUES (%s, '{}', 'PENDING', '', 0, now(), now())
"""


def test_an_update_of_a_watched_row_sends_one_notify_with_its_event_id(writer, reader, listener):
    key = str(uuid.uuid4())
    with writer.transaction():
        writer.execute(INSERT_TASK, [key])
    (insert_id,) = event_ids(reader, key)
    assert about(heard(listener), [insert_id]) == [str(insert_id)]

    # When the worker commits a new status (lab.0002 installed the trigger on lab_task)
    with writer.transaction():
        writer.execute(
            "UPDATE lab_task SET status = 'RUNNING', updated_at = now() WHERE id = %s", [key]
        )
        # nothing is announced before the commit
        assert after(heard(listener, quiet=0.2), insert_id) == []

    # Then exactly one notification arrives, and it carries the update event's id
    payloads = heard(listener)
    _, update_id = event_ids(reader, key)
    assert after(payloads, insert_id) == [str(update_id)]


def test_a_rolled_back_update_sends_no_notify(writer, reader, listener):
    key = str(uuid.uuid4())
    with writer.transaction():
        writer.execute(INSERT_TASK, [key])
    heard(listener)
    before = last_id(reader)

    writer.execute("UPDATE lab_task SET status = 'FAILED' WHERE id = %s", [key])
    writer.rollback()

    assert after(heard(listener), before) == []
    assert len(event_ids(reader, key)) == 1


def test_an_ingestor_batch_at_depth_zero_notifies_once_per_stored_row(conninfo, reader, listener):
    key = f"notify-{uuid.uuid4()}"
    rows = [
        (n, str(uuid.uuid4()), key, "broker", kind, None, "2026-01-01T00:00:00Z", None, "{}")
        for n, kind in enumerate(["enqueue", "start"])
    ]
    with psycopg.connect(conninfo, autocommit=True) as ingest:
        ingest.execute(INGEST["create_staging"])

        def store(batch: list[tuple[Any, ...]]) -> None:
            with ingest.transaction(), ingest.cursor() as cur:
                with cur.copy(INGEST["copy_staging"]) as copy:
                    for row in batch:
                        copy.write_row(row)
                cur.execute(INGEST["insert_from_staging"])

        # When the ingestor stores a batch of two events
        before = last_id(reader)
        store(rows)
        first, second = event_ids(reader, key)
        # Then each stored row was announced once, with its own id
        assert sorted(after(heard(listener), before)) == sorted([str(first), str(second)])

        # and a redelivered batch (same uuids, nothing stored) announces nothing
        store(rows)
        assert event_ids(reader, key) == [first, second]
        assert after(heard(listener), second) == []


def test_an_insert_at_depth_zero_from_django_notifies_once(reader, listener):
    from lifecycle.models import Event

    before = last_id(reader)
    event = Event.objects.create(
        task_key=f"notify-{uuid.uuid4()}", source="probe", kind="submit", status="PENDING"
    )

    assert after(heard(listener), before) == [str(event.id)]


# -- 0005 writes the events 0002 wrote -----------------------------------------------------

WATCHED = """
CREATE TABLE capture_eq.orders (
    id uuid PRIMARY KEY,
    state text,
    config jsonb NOT NULL DEFAULT '{}',
    doc json,
    note text NOT NULL DEFAULT '',
    amount numeric,
    tries integer NOT NULL DEFAULT 0,
    tags text[],
    done boolean,
    "Created At" timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
)
"""


@pytest.fixture
def both_functions(writer: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """capture_eq.orders watched twice: by the 0002 function and by the 0005 function, each
    writing to its own copy of the event table (created from the migrations' own SQL)."""
    conn = writer
    with conn.transaction():
        conn.execute("CREATE SCHEMA capture_eq")
        conn.execute(WATCHED)
        for schema, ddl in (
            ("capture_eq_0002", SQL_0002["capture_function"]),
            ("capture_eq_0005", SQL_0005["body_type"] + "\n" + SQL_0005["capture_function"]),
        ):
            capture_copy(conn, schema, [ddl])
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON capture_eq.orders "
                    "FOR EACH ROW EXECUTE FUNCTION {}('id', 'state')"
                ).format(sql.Identifier(f"z_{schema}"), sql.Identifier(schema, "lifecycle_capture"))
            )
    try:
        yield conn
    finally:
        conn.rollback()
        conn.execute("DROP SCHEMA capture_eq, capture_eq_0002, capture_eq_0005 CASCADE")
        conn.commit()


def captured(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        sql.SQL("SELECT task_key, source, kind, status, txid, body FROM {} ORDER BY id").format(
            sql.Identifier(schema, "lifecycle_event")
        )
    ).fetchall()
    conn.commit()
    return rows


LONG = "é" * 700
ESCAPED = "\n" * 300  # 300 characters, but 602 in JSON: cut by the JSON length, as in 0002
CHANGES = [
    (
        "INSERT INTO capture_eq.orders (id, state, config, doc, note, amount, tags, done)"
        " VALUES ('00000000-0000-0000-0000-000000000001', 'new', '{\"b\": [1, 2], \"a\": null}',"
        " '{\"x\":  1}', %s, 1.50, '{a,b}', NULL)",
        [LONG],
    ),
    (
        "INSERT INTO capture_eq.orders (id, state) VALUES"
        " ('00000000-0000-0000-0000-000000000002', NULL),"
        " ('00000000-0000-0000-0000-000000000003', 'new')",
        [],
    ),
    ("UPDATE capture_eq.orders SET state = 'paid' WHERE id::text LIKE '%%1'", []),
    ("UPDATE capture_eq.orders SET state = state", []),  # changes nothing: no event
    ("UPDATE capture_eq.orders SET amount = 1.500 WHERE amount IS NOT NULL", []),  # equal
    ("UPDATE capture_eq.orders SET doc = '{\"x\": 1}' WHERE doc IS NOT NULL", []),  # equal jsonb
    ("UPDATE capture_eq.orders SET note = %s, tries = tries + 1, done = true", [ESCAPED]),
    (
        "UPDATE capture_eq.orders SET state = NULL, finished_at = '2026-01-02T03:04:05Z',"
        " config = config || '{\"c\": \"z\"}' WHERE state = 'paid'",
        [],
    ),
    ("UPDATE capture_eq.orders SET state = 'x' || %s WHERE state IS NULL", ["y" * 60]),
    (
        "UPDATE capture_eq.orders SET config = jsonb_build_object('big', repeat('\"', 400))"
        " WHERE tags IS NOT NULL",
        [],
    ),
    (
        "UPDATE capture_eq.orders SET id = '00000000-0000-0000-0000-000000000009'"
        " WHERE id = '00000000-0000-0000-0000-000000000003'",
        [],
    ),
    ("UPDATE capture_eq.orders SET \"Created At\" = '2026-01-01' WHERE tags IS NOT NULL", []),
    ("DELETE FROM capture_eq.orders WHERE state IS NOT NULL", []),
]


def test_the_0005_function_writes_the_events_the_0002_function_wrote(both_functions):
    conn = both_functions
    for statement, params in CHANGES:
        with conn.transaction():
            conn.execute(statement, params)

    old, new = captured(conn, "capture_eq_0002"), captured(conn, "capture_eq_0005")
    assert len(old) == 16  # 3 inserts, 10 row changes of 7 statements, 3 deletes
    assert new == old
    # The same json text too (jsonb normalises it, so this checks types and values).
    assert [json.dumps(r[5], sort_keys=True) for r in new] == [
        json.dumps(r[5], sort_keys=True) for r in old
    ]
    cut = [r[5]["values"]["note"] for r in new if "note" in r[5]["values"]]
    assert LONG[:500] + "…" in cut and ESCAPED + "…" in cut


def test_the_0005_function_is_the_installed_one_and_still_security_definer(writer):
    row = writer.execute(
        "SELECT prosecdef, proconfig, prosrc LIKE '%lifecycle_capture_body%'"
        "  FROM pg_proc WHERE oid = 'lifecycle_capture()'::regprocedure"
    ).fetchone()
    assert row is not None
    secdef, config, new_body = row
    assert secdef and new_body
    assert any(c.startswith("search_path=") for c in config)
    # and the event table's notify trigger fires for every row, unconditionally
    (qual,) = writer.execute(
        "SELECT tgqual IS NULL FROM pg_trigger"
        " WHERE tgrelid = 'lifecycle_event'::regclass AND tgname = 'lifecycle_event_notify'"
    ).fetchone()
    assert qual


def test_a_statement_changing_three_rows_announces_three_events(writer, reader, listener):
    keys = [str(uuid.uuid4()) for _ in range(3)]
    with writer.transaction():
        for key in keys:
            writer.execute(INSERT_TASK, [key])
    heard(listener)
    before = last_id(reader)

    with writer.transaction():
        writer.execute("UPDATE lab_task SET status = 'RUNNING' WHERE id = ANY(%s::uuid[])", [keys])

    update_ids = [event_ids(reader, key)[-1] for key in keys]
    assert sorted(after(heard(listener), before)) == sorted(str(i) for i in update_ids)


def test_a_null_key_or_an_over_long_status_never_fails_the_writer(conninfo: str) -> None:
    from lifecycle.capture import trigger

    # Given a watched table of another application with loose columns
    url = conninfo
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE loose (id serial PRIMARY KEY, ref text, state text)")
    trigger.install("public.loose", "ref", "state")
    try:
        # When its writer stores a NULL key and a 100-character status
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO loose (ref, state) VALUES (NULL, %s)", ["S" * 100])
            # Then the write commits, and the event keeps what fits
            row = conn.execute(
                "SELECT task_key, status FROM lifecycle_event WHERE body->>'table' = 'public.loose'"
            ).fetchone()
        assert row == ("(null)", "S" * 64)
    finally:
        trigger.remove("public.loose")
