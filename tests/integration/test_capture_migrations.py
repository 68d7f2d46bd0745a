"""A captured table migrates, and its application's writes never fail for it: real ALTER
TABLEs (drop, add, rename, type change) by the application's own role, inside its own
transactions, on real PostgreSQL. The capture follows each migration (the per-table
function rebuilt by the event trigger, or the generic function), a table whose key or status
column is gone is shown as broken with the command that mends it, keys take their
database's prefix, and a write made in a savepoint is stored with the xmin its readers see."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from psycopg import sql as pgsql

from tests.conftest import wait_for
from tests.integration.test_watched import start_follower, store_events
from tests.services import require_postgres

require_postgres()

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class App:
    """An application's database and the role it migrates and writes with (not a superuser,
    the owner of its table, as Django's migrations run)."""

    def __init__(self, url: str, app_url: str) -> None:
        self.url, self.app_url = url, app_url

    def write(self, *statements: str) -> list[Any]:
        """Run the statements in one transaction of the application's role, the last one in
        a savepoint as Django's nested atomic() does; returns the last one's rows."""
        with psycopg.connect(self.app_url) as conn:
            for statement in statements[:-1]:
                conn.execute(statement)
            with conn.transaction():
                cur = conn.execute(statements[-1])
                return cur.fetchall() if cur.description else []

    def outbox(self) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT task_key, kind, status, old_status, changed, changed_values, row_xmin"
                " FROM lifecycle_capture.outbox ORDER BY id"
            ).fetchall()


@pytest.fixture
def app(make_database: Callable[..., str]) -> App:
    from lifecycle.runtime.database import conninfo

    role = f"test_mig_{uuid.uuid4().hex[:10]}_app"
    with psycopg.connect(conninfo(dbname="postgres"), autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(role)))
    url = make_database("test_mig", owner=role)
    app_url = psycopg.conninfo.make_conninfo(url, user=role)
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE jobs_job (id bigserial PRIMARY KEY,"
            " status varchar(20) NOT NULL DEFAULT 'PENDING', output text, payload jsonb)"
        )
    return App(url, app_url)


MIGRATIONS = [
    # (what Django's migration sends, the write after it, the columns the write captures)
    (
        "ALTER TABLE jobs_job DROP COLUMN output",
        "INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id",
        ["id", "payload", "status"],
    ),
    (
        "ALTER TABLE jobs_job ADD COLUMN result text NULL",
        "INSERT INTO jobs_job (status, result) VALUES ('PENDING', 'r') RETURNING id",
        ["id", "payload", "result", "status"],
    ),
    (
        "ALTER TABLE jobs_job ALTER COLUMN payload TYPE text USING payload::text",
        "INSERT INTO jobs_job (status, payload) VALUES ('PENDING', 'p') RETURNING id",
        ["id", "payload", "result", "status"],
    ),
    (
        'ALTER TABLE jobs_job ALTER COLUMN "status" TYPE varchar(40)',
        "INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id",
        ["id", "payload", "result", "status"],
    ),
]


@pytest.mark.parametrize("generic", [False, True], ids=["generated", "generic"])
def test_migrations_never_fail_the_writes_and_the_capture_follows_them(
    app: App, generic: bool
) -> None:
    from lifecycle.capture import outbox

    # Given the application's table captured (by a superuser: its own function, rebuilt
    # after each migration; or with the generic function)
    watched = outbox.install(app.url, "jobs_job", "id", "status", generic=generic)
    assert watched.mode == ("any" if generic else "generated")
    for ddl, insert, columns in MIGRATIONS:
        # When the application's role migrates it and writes, in one transaction
        (key,) = app.write(ddl, insert)[0]
        app.write(f"UPDATE jobs_job SET status = 'RUNNING' WHERE id = {key}")
        # Then the writes went through, and both changes were captured with what they changed
        insert_row, update_row = app.outbox()[-2:]
        assert insert_row[:3] == (str(key), "insert", "PENDING"), ddl
        assert insert_row[4] == columns, ddl
        assert update_row[:5] == (str(key), "update", "RUNNING", "PENDING", ["status"]), ddl
    assert all(t.missing_columns == () for t in outbox.watched(app.url))


def test_a_renamed_status_column_is_followed_by_the_generated_function(app: App) -> None:
    from lifecycle.capture import outbox

    outbox.install(app.url, "jobs_job", "id", "status")
    # When a migration renames the status column, then writes under the new name
    (key,) = app.write(
        "ALTER TABLE jobs_job RENAME COLUMN status TO state",
        "INSERT INTO jobs_job (state) VALUES ('PENDING') RETURNING id",
    )[0]
    app.write(f"UPDATE jobs_job SET state = 'COMPLETED' WHERE id = {key}")
    # Then the statuses are still captured, and the capture names the column as it is now
    assert [r[2] for r in app.outbox()[-2:]] == ["PENDING", "COMPLETED"]
    (table,) = outbox.watched(app.url)
    assert (table.status, table.missing_columns) == ("state", ())


def test_a_renamed_status_column_leaves_the_generic_capture_broken_not_the_writes(
    app: App,
) -> None:
    from lifecycle.capture import outbox

    outbox.install(app.url, "jobs_job", "id", "status", generic=True)
    (key,) = app.write(
        "ALTER TABLE jobs_job RENAME COLUMN status TO state",
        "INSERT INTO jobs_job (state) VALUES ('PENDING') RETURNING id",
    )[0]
    # The write went through, captured without its status
    assert app.outbox()[-1][:3] == (str(key), "insert", None)
    (table,) = outbox.watched(app.url)
    assert table.missing_columns == ("status",)
    assert (
        table.broken
        == "its status column 'status' is gone: its changes are captured without their status"
    )


def test_a_dropped_key_column_is_shown_broken_with_the_command_that_mends_it(
    app: App, admin_client: Any
) -> None:
    from lifecycle.capture import watching
    from lifecycle.models import WatchedDatabase

    watching.install("jobs_job", "id", "status", database=app.url, name="jobs-db")
    app.write("INSERT INTO jobs_job (status) VALUES ('PENDING')")
    # When a migration replaces the key column
    app.write(
        "ALTER TABLE jobs_job ADD COLUMN uid uuid NOT NULL DEFAULT gen_random_uuid()",
        "ALTER TABLE jobs_job DROP COLUMN id",
    )
    # Then the application still writes, and nothing it writes is put on a task
    before = len(app.outbox())
    app.write("INSERT INTO jobs_job (status) VALUES ('PENDING')")
    app.write("UPDATE jobs_job SET status = 'RUNNING'")
    assert len(app.outbox()) == before
    # And `capture list` says so, with the command that mends it
    (line,) = [row.line() for row in watching.listing() if row.database == "jobs-db"]
    assert "BROKEN: its key column 'id' is gone: its changes are not captured" in line
    mend = "python manage.py lifecycle capture install public.jobs_job --key KEY_COLUMN"
    assert f"{mend} --status status" in line
    assert "--replace" in line
    # And the follower records it for the dashboard, whose home page shows it
    follower = start_follower(app.url)
    try:
        follower.name = "jobs-db"
        wait_for(
            lambda: (
                "key column 'id' is gone" in WatchedDatabase.objects.get(name="jobs-db").problem
            ),
            10,
            what="the follower's record of the broken table",
        )
    finally:
        follower.stop()
        follower.join(5)
    page = admin_client.get("/").content.decode()
    assert 'data-testid="capture-problems"' in page
    assert (
        "public.jobs_job: its key column &#x27;id&#x27; is gone: its changes are not captured."
        " Mend it with:" in page
    )
    # When the command is run with the new key column, the table is mended
    watching.install("jobs_job", "uid", "status", database=app.url, replace=True)
    (row,) = [row for row in watching.listing() if row.database == "jobs-db"]
    assert row.table is not None and row.table.broken == ""
    app.write("UPDATE jobs_job SET status = 'COMPLETED'")
    assert [r[2] for r in app.outbox()[-2:]] == ["COMPLETED", "COMPLETED"]


def test_a_failed_rebuild_puts_the_table_on_the_generic_function(app: App) -> None:
    from lifecycle.capture import outbox

    outbox.install(app.url, "jobs_job", "id", "status")
    with psycopg.connect(app.url, autocommit=True) as conn:  # a rebuild that cannot work
        conn.execute(
            "CREATE OR REPLACE FUNCTION lifecycle_capture.generate(watched_table oid) RETURNS void"
            " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'broken on purpose'; END $$"
        )
    # When the application migrates: the migration goes through, with a warning
    (key,) = app.write(
        "ALTER TABLE jobs_job DROP COLUMN output",
        "INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id",
    )[0]
    # Then its writes are captured by the generic function
    assert app.outbox()[-1][:4] == (str(key), "insert", "PENDING", None)
    (table,) = outbox.watched(app.url)
    assert table.mode == "any"


def test_a_table_wider_than_fifty_columns_is_captured(app: App) -> None:
    from lifecycle.capture import outbox

    wide = ", ".join(f"c{i:02} int DEFAULT {i}" for i in range(60))
    app.write(f"ALTER TABLE jobs_job ADD COLUMN x int, {wide.replace('c', 'ADD COLUMN c')}")
    outbox.install(app.url, "jobs_job", "id", "status")
    (key,) = app.write("INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id")[0]
    row = app.outbox()[-1]
    assert row[:3] == (str(key), "insert", "PENDING")
    assert len(row[4]) == 65 and row[5]["c59"] == 59


def test_keys_take_their_database_prefix(app: App) -> None:
    from lifecycle.capture import outbox

    outbox.install(app.url, "jobs_job", "id", "status", key_prefix="jobs-db:")
    (key,) = app.write("INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id")[0]
    app.write(f"DELETE FROM jobs_job WHERE id = {key}")
    assert [r[:2] for r in app.outbox()] == [
        (f"jobs-db:{key}", "insert"),
        (f"jobs-db:{key}", "delete"),
    ]
    (table,) = outbox.watched(app.url)
    assert table.key_prefix == "jobs-db:"


def test_a_dropped_table_takes_its_capture_with_it(app: App) -> None:
    from lifecycle.capture import outbox

    outbox.install(app.url, "jobs_job", "id", "status")
    app.write("DROP TABLE jobs_job")
    with psycopg.connect(app.url) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM lifecycle_capture.watched),"
            " (SELECT count(*) FROM pg_proc WHERE proname LIKE 'capture\\_%'"
            "  AND pronamespace = 'lifecycle_capture'::regnamespace AND proname <> 'capture_any')"
        ).fetchone()
    assert left == (0, 0)


def test_a_write_in_a_savepoint_is_stored_with_the_xmin_its_readers_see(app: App) -> None:
    from lifecycle.capture import outbox
    from lifecycle.events import EventRecord
    from lifecycle.timeline.layout import TimelineBuilder

    outbox.install(app.url, "jobs_job", "id", "status", key_prefix="sp:")
    # Given a job created and completed inside savepoints, as Django's nested atomic() does
    (key,) = app.write("SELECT 1", "INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id")[
        0
    ]
    app.write("SELECT 1", f"UPDATE jobs_job SET status = 'COMPLETED' WHERE id = {key}")
    with psycopg.connect(app.app_url) as conn:
        (xmin,) = conn.execute(
            f"SELECT xmin::text::bigint FROM jobs_job WHERE id = {key}"
        ).fetchone()  # type: ignore[misc]
    # When the follower copies the commits
    follower = start_follower(app.url)
    try:
        wait_for(lambda: len(store_events(f"sp:{key}")) == 2, 10, what="the two commits")
    finally:
        follower.stop()
        follower.join(5)
    commits = store_events(f"sp:{key}")
    # Then each carries its row's own xmin, one past its transaction's
    assert commits[-1]["body"]["xmin"] == xmin != commits[-1]["txid"] % 2**32
    # And a read of that xmin links to the commit, on the timeline
    records = [
        EventRecord(
            c["id"],
            c["source"],
            c["kind"],
            c["task_key"],
            c["status"],
            c["at"],
            txid=c["txid"],
            body=c["body"],
        )
        for c in commits
    ]
    read = EventRecord(
        99, "api", "read", f"sp:{key}", "COMPLETED", commits[-1]["at"], body={"xmin": xmin}
    )
    builder = TimelineBuilder(all_commits=False)
    builder.index_commits(records)
    assert builder.version_read(read) is records[-1]


@pytest.mark.parametrize("generic", [False, True], ids=["generated", "generic"])
def test_writers_running_through_a_migration_never_fail(app: App, generic: bool) -> None:
    import threading

    from lifecycle.capture import outbox

    # Long-lived connections, as a worker's: their cached plans meet each new row type
    outbox.install(app.url, "jobs_job", "id", "status", generic=generic)
    errors: list[str] = []
    written = [0]
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(app.app_url, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    with conn.transaction():
                        (key,) = conn.execute(
                            "INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id"
                        ).fetchone()  # type: ignore[misc]
                        with conn.transaction():
                            conn.execute(
                                "UPDATE jobs_job SET status = 'RUNNING' WHERE id = %s", [key]
                            )
                    written[0] += 1
                except psycopg.Error as exc:
                    errors.append(str(exc))

    # Given two writers at full speed
    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        # When the application's migrations run under them
        for ddl, _, _ in MIGRATIONS:
            before = written[0]
            wait_for(lambda: written[0] > before + 20, 10, what="writes between migrations")  # noqa: B023
            app.write(ddl, "SELECT 1")
        before = written[0]
        wait_for(lambda: written[0] > before + 20, 10, what="writes after the last migration")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    # Then no write failed, and every one was captured
    assert errors == []
    assert sum(1 for r in app.outbox() if r[1] == "insert") == written[0]


@pytest.mark.parametrize("schema", ["older", "mixed"])
def test_a_table_an_older_version_installed_is_marked_for_reinstalling(
    app: App, schema: str
) -> None:
    from lifecycle.capture import outbox

    # Given a table captured by a version before migrations were followed: its function
    # named in its comment, no row in watched (and, before that, no watched table at all)
    outbox.install(app.url, "jobs_job", "id", "status")
    with psycopg.connect(app.url, autocommit=True) as conn:
        (function,) = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.pronamespace = 'lifecycle_capture'::regnamespace"
            " AND p.proname LIKE 'capture\\_%' AND p.proname <> 'capture_any'"
        ).fetchone()  # type: ignore[misc]
        conn.execute(f'COMMENT ON FUNCTION {function} IS \'{{"key": "id", "status": "status"}}\'')
        conn.execute(
            "DROP TABLE lifecycle_capture.watched CASCADE"
            if schema == "older"
            else "DELETE FROM lifecycle_capture.watched"
        )
    # Then capture list says so, and how to reinstall it
    (table,) = outbox.watched(app.url)
    assert (table.key, table.status, table.mode) == ("id", "status", "older")
    assert table.broken.startswith("installed by an older version")
    # And reinstalling mends it
    outbox.install(app.url, "jobs_job", "id", "status", replace=True)
    (table,) = outbox.watched(app.url)
    assert (table.mode, table.broken) == ("generated", "")
