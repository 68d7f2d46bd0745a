"""The capture trigger on real PostgreSQL: one event per committed change, none otherwise,
and the ``lifecycle capture`` command that puts it on any table."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.management import call_command

from tests.services import require_postgres

require_postgres()

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def events_of(reader: psycopg.Connection[Any], key: str) -> list[dict[str, Any]]:
    rows = reader.execute(
        "SELECT source, kind, status, txid, body FROM lifecycle_event"
        " WHERE task_key = %s ORDER BY id",
        [key],
    ).fetchall()
    return [dict(zip(["source", "kind", "status", "txid", "body"], r, strict=True)) for r in rows]


INSERT_TASK = """
INSERT INTO lab_task (id, config, status, error, executions, created_at, updated_at)
VALUES (%s, '{}', %s, '', 0, now(), now())
"""


def write(conn: psycopg.Connection[Any], query: str, params: list[Any]) -> tuple[int, int]:
    """Run one statement in a transaction of its own; (txid, backend pid) of that transaction."""
    with conn.transaction():
        conn.execute(query, params)
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint, pg_backend_pid()").fetchone()
    assert row is not None
    return row[0], row[1]


def test_each_committed_change_is_one_event_with_its_transaction_and_writer(writer, reader):
    # Given a lab task row written, updated and deleted in three committed transactions
    key = str(uuid.uuid4())
    tx_insert, pid = write(writer, INSERT_TASK, [key, "PENDING"])
    tx_update, _ = write(writer, "UPDATE lab_task SET status = %s WHERE id = %s", ["FAILED", key])
    tx_delete, _ = write(writer, "DELETE FROM lab_task WHERE id = %s", [key])

    # Then there is exactly one db event per commit, in order, each with the writer's txid
    found = events_of(reader, key)
    assert [(e["source"], e["kind"], e["status"], e["txid"]) for e in found] == [
        ("db", "insert", "PENDING", tx_insert),
        ("db", "update", "FAILED", tx_update),
        ("db", "delete", "FAILED", tx_delete),
    ]
    insert, update, delete = (e["body"] for e in found)
    # the old and new status
    assert (insert["old_status"], insert["new_status"]) == (None, "PENDING")
    assert (update["old_status"], update["new_status"]) == ("PENDING", "FAILED")
    assert (delete["old_status"], delete["new_status"]) == ("FAILED", None)
    # the changed columns (all of them for an insert), and the new values of an update
    assert update["changed"] == ["status"]
    assert update["values"] == {"status": "FAILED"}
    assert "status" in insert["changed"] and "id" in insert["changed"]
    # the writer: application_name and backend pid
    for body in (insert, update, delete):
        assert body["application_name"] == "lifecycle-test-writer"
        assert body["pid"] == pid
        assert body["table"] == "public.lab_task"


def test_an_update_that_changes_nothing_is_no_event(writer, reader):
    key = str(uuid.uuid4())
    write(writer, INSERT_TASK, [key, "RUNNING"])

    write(writer, "UPDATE lab_task SET status = status WHERE id = %s", [key])

    assert [e["kind"] for e in events_of(reader, key)] == ["insert"]


def test_a_rolled_back_change_is_no_event(writer, reader):
    key = str(uuid.uuid4())
    write(writer, INSERT_TASK, [key, "RUNNING"])

    # When the worker writes FAILED but its transaction rolls back
    writer.execute("UPDATE lab_task SET status = 'FAILED' WHERE id = %s", [key])
    writer.rollback()
    # and a new row is inserted and rolled back
    other = str(uuid.uuid4())
    writer.execute(INSERT_TASK, [other, "PENDING"])
    writer.rollback()

    # Then only the committed insert left an event
    assert [(e["kind"], e["status"]) for e in events_of(reader, key)] == [("insert", "RUNNING")]
    assert events_of(reader, other) == []


def test_an_event_is_invisible_until_its_writer_commits(writer, reader):
    key = str(uuid.uuid4())
    writer.execute(INSERT_TASK, [key, "PENDING"])  # open transaction

    assert events_of(reader, key) == []
    writer.commit()
    assert [e["kind"] for e in events_of(reader, key)] == ["insert"]


# -- the ``lifecycle capture`` command on a table that is not the lab's --------------------


def capture(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("lifecycle", "capture", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def orders(reader) -> Iterator[str]:
    reader.execute("CREATE TABLE public.orders (order_no text PRIMARY KEY, state text)")
    yield "public.orders"
    reader.execute("DROP TABLE IF EXISTS public.orders")


def test_install_then_remove_capture_on_any_table(orders, writer, reader):
    # Given a table nobody watches: its changes leave no event
    write(writer, "INSERT INTO public.orders VALUES ('A-1', 'new')", [])
    assert events_of(reader, "A-1") == []

    # When the trigger is installed on it
    code, out, err = capture("install", "public.orders", "--key", "order_no", "--status", "state")
    assert (code, err) == (0, "")
    assert "public.orders" in out

    # Then its committed changes are events keyed and statused by the named columns
    write(writer, "UPDATE public.orders SET state = 'paid' WHERE order_no = 'A-1'", [])
    write(writer, "INSERT INTO public.orders VALUES ('A-2', 'new')", [])
    assert [(e["kind"], e["status"]) for e in events_of(reader, "A-1")] == [("update", "paid")]
    assert [(e["kind"], e["status"]) for e in events_of(reader, "A-2")] == [("insert", "new")]
    assert events_of(reader, "A-1")[0]["body"]["old_status"] == "new"
    assert events_of(reader, "A-1")[0]["body"]["table"] == "public.orders"

    # and ``list`` shows it with its columns, beside the lab's table
    code, out, _ = capture("list")
    assert code == 0
    # (with how many events each has, and when the last one came)
    lines = out.splitlines()
    assert any("public.orders  key=order_no  status=state  events=2  last=20" in x for x in lines)
    assert any("public.lab_task  key=id  status=status  events=" in x for x in lines)

    # When it is removed, changes stop producing events
    code, out, err = capture("remove", "orders")
    assert (code, err) == (0, "")
    write(writer, "UPDATE public.orders SET state = 'shipped' WHERE order_no = 'A-1'", [])
    assert [e["status"] for e in events_of(reader, "A-1")] == ["paid"]
    assert "public.orders" not in capture("list")[1]


def test_installing_twice_is_refused_unless_replace(orders, writer, reader):
    assert capture("install", "orders", "--key", "order_no", "--status", "state")[0] == 0

    code, _, err = capture("install", "orders", "--key", "state", "--status", "order_no")
    assert code == 2
    assert "already installed on public.orders" in err and "--replace" in err

    code, _, err = capture(
        "install", "orders", "--key", "state", "--status", "order_no", "--replace"
    )
    assert (code, err) == (0, "")
    write(writer, "INSERT INTO public.orders VALUES ('B-1', 'queued')", [])
    # The key is now the state column: one trigger, the new arguments.
    assert [(e["kind"], e["status"]) for e in events_of(reader, "queued")] == [("insert", "B-1")]


def test_clear_errors_for_missing_table_column_or_trigger(orders):
    code, out, err = capture("install", "public.nope", "--key", "a", "--status", "b")
    assert (code, out) == (2, "")
    assert "no table named 'public.nope'" in err

    code, _, err = capture("install", "orders", "--key", "order_no", "--status", "status")
    assert code == 2
    assert "table public.orders has no status column 'status' (columns: order_no, state)" in err

    code, _, err = capture("install", "orders", "--key", "id", "--status", "state")
    assert code == 2 and "has no key column 'id'" in err

    code, _, err = capture("remove", "orders")
    assert code == 2 and "not installed on public.orders" in err

    code, _, err = capture("remove", "no_such_table")
    assert code == 2 and "no table named 'no_such_table'" in err

    code, _, err = capture("install", "lifecycle_event_task_id", "--key", "a", "--status", "b")
    assert code == 2 and "is an index, not a table" in err


def test_names_are_checked_and_quoted_never_spliced(reader, writer):
    # Given a schema and table whose names need quoting
    reader.execute('CREATE SCHEMA "cap test"')
    reader.execute('CREATE TABLE "cap test"."Orders" ("Order No" text PRIMARY KEY, "State" text)')
    try:
        # An injection attempt in a column name is just a missing column
        code, _, err = capture(
            "install",
            '"cap test"."Orders"',
            "--key",
            "x'); DROP TABLE lab_task; --",
            "--status",
            "State",
        )
        assert code == 2 and "has no key column" in err

        code, _, err = capture(
            "install", '"cap test"."Orders"', "--key", "Order No", "--status", "State"
        )
        assert (code, err) == (0, "")
        write(writer, """INSERT INTO "cap test"."Orders" VALUES ('C-1', 'open')""", [])
        (event,) = events_of(reader, "C-1")
        assert (event["kind"], event["status"]) == ("insert", "open")
        assert json.dumps(event["body"]["table"]) == '"cap test.Orders"'
        assert "cap test.Orders  key=Order No  status=State" in capture("list")[1]
    finally:
        reader.execute('DROP SCHEMA "cap test" CASCADE')
    assert reader.execute("SELECT to_regclass('lab_task') IS NOT NULL").fetchone() == (True,)


def test_a_writers_temp_table_named_like_the_event_table_neither_diverts_nor_suppresses(
    writer: psycopg.Connection[Any], reader: psycopg.Connection[Any]
) -> None:
    # Given a writer whose session has a temp table shaped and named like the event table
    # (pg_temp comes first on any search_path that does not name it)
    writer.execute(
        "CREATE TEMP TABLE lifecycle_event (task_key text, source text, kind text,"
        " status text, at timestamptz, txid bigint, body jsonb)"
    )
    writer.commit()
    key = str(uuid.uuid4())
    # When it writes a captured row
    write(writer, INSERT_TASK, [key, "PENDING"])
    # Then the event is in the real event table, and the temp table got nothing
    assert [e["kind"] for e in events_of(reader, key)] == ["insert"]
    assert writer.execute("SELECT count(*) FROM pg_temp.lifecycle_event").fetchone() == (0,)


def test_the_capture_function_is_pinned_and_owned_by_a_role_that_may_only_insert_events(
    reader: psycopg.Connection[Any],
) -> None:
    config, owner, database, superuser = reader.execute(
        "SELECT p.proconfig, pg_get_userbyid(p.proowner), current_database(), r.rolsuper"
        " FROM pg_proc p, pg_roles r"
        " WHERE p.proname = 'lifecycle_capture' AND r.rolname = current_user"
    ).fetchone()  # type: ignore[misc]
    assert config == ["search_path=pg_catalog, pg_temp"]
    if not superuser:
        pytest.skip("the owner role is made by a superuser's migration")
    assert owner == f"{database}_lifecycle_capture"[:63]
    rights = reader.execute(
        "SELECT has_table_privilege(%(r)s, 'lifecycle_event', 'INSERT'),"
        " has_table_privilege(%(r)s, 'lifecycle_event', 'SELECT'),"
        " has_table_privilege(%(r)s, 'lifecycle_event', 'DELETE'),"
        " has_table_privilege(%(r)s, 'lab_task', 'SELECT'),"
        " has_schema_privilege(%(r)s, current_schema(), 'CREATE'),"
        " (SELECT rolcanlogin FROM pg_roles WHERE rolname = %(r)s)",
        {"r": owner},
    ).fetchone()
    assert rights == (True, False, False, False, False, False)
