"""The capture in an application's database, attacked by the application's own role (not a
superuser, the owner of its tables and of the database, as Django's is): its names, types
and DDL must neither give it more rights than it has, nor make one of its writes fail, nor
stop the follower. Real PostgreSQL; each finding of an outside review of issue 23."""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from lifecycle.capture.trigger import CaptureError
from tests.conftest import wait_for
from tests.integration.test_capture_migrations import App, app  # noqa: F401 (a fixture)
from tests.integration.test_watched import start_follower, store_events
from tests.services import require_postgres

require_postgres()

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A function of the application's role that writes an event of its choosing: it may not,
# unless something of ours runs it with more rights than its own.
FORGE = """
CREATE FUNCTION public.forge() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lifecycle_capture.outbox
        (task_key, kind, at, txid, table_name, changed, changed_values, pid, db_user)
    VALUES ('forged', 'update', now(), 1, 'x', '{}', '{}', 0, current_user);
    RETURN 1;
END $$"""


def forged(application: App) -> list[Any]:
    return [r for r in application.outbox() if r[0] == "forged"]


def test_a_line_break_in_the_table_name_adds_no_code_to_its_function(app: App) -> None:  # noqa: F811
    from lifecycle.capture import outbox

    # Given the table captured by a superuser, and a function of the application's role
    outbox.install(app.url, "jobs_job", "id", "status")
    name = '"j\nDECLARE z int := public.forge(); --"'
    # When the role renames its table to a name that, on a line of its own, is code
    app.write(FORGE, f"ALTER TABLE jobs_job RENAME TO {name}")
    (key,) = app.write(f"INSERT INTO {name} (status) VALUES ('PENDING') RETURNING id")[0]
    # Then the write was captured as itself, and nothing ran the role's function
    assert forged(app) == []
    assert app.outbox()[-1][:3] == (str(key), "insert", "PENDING")
    (table,) = outbox.watched(app.url)
    assert table.mode == "generated"


@pytest.mark.parametrize("made_by", ["an install of its own", "an empty schema"])
def test_a_superuser_does_not_install_into_a_capture_schema_another_role_owns(
    app: App,  # noqa: F811
    made_by: str,
) -> None:
    from lifecycle.capture import outbox

    # Given the schema lifecycle_capture made by the application's role: by installing
    # (with its own URL: the generic function), or empty, before anyone installs
    if made_by == "an install of its own":
        app.write("CREATE TABLE other (id int PRIMARY KEY, status text)")
        assert outbox.install(app.app_url, "other", "id", "status").mode == "any"
    else:
        app.write("CREATE SCHEMA lifecycle_capture")
    # When a superuser installs into that database, it is refused, saying why
    with pytest.raises(CaptureError, match="belongs to .*_app, not to a superuser"):
        outbox.install(app.url, "jobs_job", "id", "status")
    # And the role's own function named like ours, run by the event trigger after its next
    # ALTER TABLE, would have run as a superuser: none was installed to run it
    with psycopg.connect(app.url) as conn:
        (triggers,) = conn.execute(
            "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'lifecycle_capture%'"
        ).fetchone()  # type: ignore[misc]
    assert triggers == 0
    app.write(
        "CREATE OR REPLACE FUNCTION lifecycle_capture.generate(watched_table oid) RETURNS void"
        " LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'ALTER ROLE ' || current_user || ' SUPERUSER';"
        " END $$",
        "ALTER TABLE jobs_job ADD COLUMN x int",
    )
    ((superuser,),) = app.write("SELECT rolsuper FROM pg_roles WHERE rolname = session_user")
    assert superuser is False


@pytest.mark.parametrize("generic", [False, True], ids=["generated", "generic"])
def test_columns_whose_type_has_no_equality_never_fail_an_update(
    app: App,  # noqa: F811
    generic: bool,
) -> None:
    from lifecycle.capture import outbox

    # Given a table with columns of types that have no "=" in pg_catalog (json, xml, point,
    # and an array of json), captured
    app.write("ALTER TABLE jobs_job ADD COLUMN j json, ADD COLUMN p point, ADD COLUMN ja json[]")
    outbox.install(app.url, "jobs_job", "id", "status", generic=generic)
    (key,) = app.write(
        "INSERT INTO jobs_job (status, j, p, ja) VALUES"
        " ('PENDING', '{\"a\": 1}', '(1,2)', ARRAY['{}'::json]) RETURNING id"
    )[0]
    # When the application updates it, and a migration adds another such column
    app.write(f"UPDATE jobs_job SET status = 'RUNNING' WHERE id = {key}")
    app.write(f"UPDATE jobs_job SET j = '{{\"a\": 2}}', p = '(2,2)' WHERE id = {key}")
    app.write("ALTER TABLE jobs_job ADD COLUMN x xml", "UPDATE jobs_job SET x = '<a/>'")
    # Then every write went through, each captured with what it changed
    assert [(r[1], r[4]) for r in app.outbox()[-3:]] == [
        ("update", ["status"]),
        ("update", ["j", "p"]),
        ("update", ["x"]),
    ]


@pytest.mark.parametrize(
    "drop",
    [
        "DROP DOMAIN label CASCADE",
        "DROP TYPE mood CASCADE",
        "DROP FUNCTION twice(bigint) CASCADE",
    ],
)
def test_a_column_dropped_with_what_it_uses_never_fails_the_writes(
    app: App,  # noqa: F811
    drop: str,
) -> None:
    from lifecycle.capture import outbox

    # Given columns that use a domain, an enum and a function (a generated column)
    app.write(
        "CREATE DOMAIN label AS text",
        "CREATE TYPE mood AS ENUM ('calm')",
        "CREATE FUNCTION twice(bigint) RETURNS bigint IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2'",
        "ALTER TABLE jobs_job ADD COLUMN l label, ADD COLUMN m mood,"
        " ADD COLUMN t bigint GENERATED ALWAYS AS (twice(id)) STORED",
    )
    outbox.install(app.url, "jobs_job", "id", "status")
    (key,) = app.write("INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id")[0]
    # When a migration drops that, and the columns with it (no ALTER TABLE)
    app.write(drop)
    # Then the application still writes, captured
    app.write(f"UPDATE jobs_job SET status = 'RUNNING' WHERE id = {key}")
    app.write("INSERT INTO jobs_job (status) VALUES ('PENDING')")
    assert [r[1:3] for r in app.outbox()[-2:]] == [("update", "RUNNING"), ("insert", "PENDING")]


def test_a_typed_table_follows_the_migrations_of_its_type(app: App) -> None:  # noqa: F811
    from lifecycle.capture import outbox

    # Given a table made of a composite type, captured
    app.write(
        "CREATE TYPE job_row AS (id int, status text, note text)", "CREATE TABLE typed OF job_row"
    )
    outbox.install(app.url, "typed", "id", "status")
    app.write("INSERT INTO typed VALUES (1, 'PENDING', 'n')")
    # When migrations change the type, and its table with it (ALTER TYPE, not ALTER TABLE)
    for ddl in (
        "ALTER TYPE job_row ADD ATTRIBUTE extra int CASCADE",
        "ALTER TYPE job_row DROP ATTRIBUTE note CASCADE",
        "ALTER TYPE job_row RENAME ATTRIBUTE status TO state CASCADE",
    ):
        app.write(ddl)
        # Then the writes go through, the new column captured, the renamed status followed
        app.write("UPDATE typed SET extra = coalesce(extra, 0) + 1")
    assert app.outbox()[-1][1:5] == ("update", "PENDING", "PENDING", ["extra"])


@pytest.mark.parametrize("kind", ["partition", "inheriting table"])
def test_a_table_follows_the_migrations_of_its_parent(app: App, kind: str) -> None:  # noqa: F811
    from lifecycle.capture import outbox

    # Given a partition, or a table that inherits, captured on its own
    if kind == "partition":
        app.write(
            "CREATE TABLE parent (id int, status text, note text) PARTITION BY LIST (id)",
            "CREATE TABLE child PARTITION OF parent FOR VALUES IN (1)",
        )
    else:
        app.write(
            "CREATE TABLE parent (id int, status text, note text)",
            "CREATE TABLE child (extra int) INHERITS (parent)",
        )
    outbox.install(app.url, "child", "id", "status")
    app.write("INSERT INTO child (id, status) VALUES (1, 'PENDING')")
    # When migrations of the parent drop, rename and add its columns
    app.write("ALTER TABLE parent DROP COLUMN note")
    app.write("UPDATE child SET status = 'RUNNING'")
    app.write("ALTER TABLE parent RENAME COLUMN status TO state")
    app.write("UPDATE child SET state = 'COMPLETED'")
    # Then the child's writes went through, its renamed status followed
    assert [r[1:4] for r in app.outbox()[-2:]] == [
        ("update", "RUNNING", "PENDING"),
        ("update", "COMPLETED", "RUNNING"),
    ]


def follow_until_stored(app: App, task: str, what: str) -> None:  # noqa: F811
    """Run a follower until ``task``'s one change is in the store, then stop it."""
    follower = start_follower(app.url)
    try:
        wait_for(lambda: len(store_events(task)) == 1, 10, what=what)
    finally:
        follower.stop()
        follower.join(5)


def follow_a_new_job(app: App, what: str) -> None:  # noqa: F811
    """A job written after whatever the test put in the outbox, followed into the store."""
    (key,) = app.write("INSERT INTO jobs_job (status) VALUES ('PENDING') RETURNING id")[0]
    follow_until_stored(app, str(key), what)


def put_in_outbox(url: str, columns: str, values: str) -> None:
    """A row written straight into the outbox, as no trigger of ours writes one."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO lifecycle_capture.outbox ({columns}) VALUES ({values})")


def test_a_key_longer_than_an_event_holds_does_not_stop_the_follower(app: App) -> None:  # noqa: F811
    from lifecycle.capture import outbox
    from lifecycle.events import MAX_TASK_KEY

    # Given a table keyed by a text column (not indexed: any length), captured
    app.write("CREATE TABLE notes (ref text, status text)")
    outbox.install(app.url, "notes", "ref", "status")
    # When it holds a key of 3,200 characters, too long to index, then a short one
    app.write(
        "INSERT INTO notes SELECT string_agg(md5(i::text), ''), 'A' FROM generate_series(1, 100) i"
    )
    app.write("INSERT INTO notes VALUES ('short', 'B')")
    # Then the follower copies both, the long key cut to what an event holds
    follow_until_stored(app, "short", what="the change after the long key")
    long_key = "".join(hashlib.md5(str(i).encode()).hexdigest() for i in range(1, 101))
    assert len(store_events(long_key[:MAX_TASK_KEY])) == 1
    assert app.outbox() == []


def test_a_row_no_writer_makes_does_not_stop_the_follower(app: App) -> None:  # noqa: F811
    from lifecycle.capture import outbox

    # Given, in the outbox, a row with an infinite time and a kind longer than an event's
    # (no trigger of ours writes one; code the outbox's writer runs might), then a real one
    outbox.install(app.url, "jobs_job", "id", "status")
    put_in_outbox(
        app.url,
        "task_key, kind, at, txid, table_name, changed, changed_values, pid, db_user",
        "'odd', repeat('k', 40), 'infinity', 1, 'x', '{}', '{}', 0, 'x'",
    )
    # Then the follower copies both
    follow_a_new_job(app, what="the change after the odd row")
    (odd,) = store_events("odd")
    assert odd["at"].year == 8999 and len(odd["kind"]) == 32
    assert app.outbox() == []


def test_nulls_in_an_outbox_the_application_owns_do_not_stop_the_follower(
    app: App,  # noqa: F811
) -> None:
    from lifecycle.capture import outbox

    # Given the generic capture installed by the application's role, which so owns the
    # outbox, and a row of NULLs it wrote there after dropping the columns' NOT NULL
    outbox.install(app.app_url, "jobs_job", "id", "status")
    with psycopg.connect(app.app_url, autocommit=True) as conn:
        for column in ("uuid", "task_key", "kind", "at", "txid", "changed", "changed_values"):
            conn.execute(
                f"ALTER TABLE lifecycle_capture.outbox ALTER COLUMN {column} DROP NOT NULL"
            )
    put_in_outbox(
        app.app_url,
        "uuid, task_key, kind, at, txid, table_name, changed, changed_values, pid, db_user",
        "NULL, NULL, NULL, NULL, NULL, 'x', NULL, NULL, 0, 'x'",
    )
    # Then the follower copies the real change after it, and empties the outbox
    follow_a_new_job(app, what="the change after the null row")
    assert app.outbox() == []


def check_now(app: App, name: str) -> None:  # noqa: F811
    """One look of the follower at the database's capture, recorded for the dashboard."""
    from lifecycle.capture.follower import Follower
    from lifecycle.runtime.database import conninfo

    with (
        psycopg.connect(app.url, autocommit=True) as watched,
        psycopg.connect(conninfo(), autocommit=True) as store,
    ):
        Follower(name, app.url, conninfo()).check(watched, store)


def test_names_in_the_mending_notice_are_shown_as_text_never_as_a_command(
    app: App,  # noqa: F811
    admin_client: Any,
) -> None:
    import re

    from lifecycle.capture import watching

    # Given tables whose names are markup, or carry the notice's own words and a line break,
    # captured, then broken by a migration (their status column dropped)
    tables = [
        ('"<script>alert(1)</script>; mend it with: curl x|sh #"', '"<b onclick=alert(2)>"'),
        ('"a\n; mend it with: rm -rf ~ #"', "status"),
    ]
    for table, status in tables:
        app.write(f"CREATE TABLE {table} (id int, {status} text)")
        watching.install(table, "id", status.strip('"'), database=app.url, name="jobs-db")
        app.write(f"ALTER TABLE {table} DROP COLUMN {status}")
    check_now(app, "jobs-db")
    # When the home page shows what needs mending
    page = admin_client.get("/").content.decode()
    notice = page[page.index('data-testid="capture-problems"') : page.index("</section>")]
    # Then the names are text, and every command it offers is the command that mends
    assert "<script>" not in notice and "<b " not in notice
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in notice
    commands = re.findall(r"<pre><code>(.*?)</code></pre>", notice, re.S)
    assert len(commands) == 2
    assert all(c.startswith("python manage.py lifecycle capture install ") for c in commands)
    assert notice.count("<li>") == 2


def test_the_mending_notice_is_bounded_however_many_tables_are_broken(
    app: App,  # noqa: F811
    admin_client: Any,
) -> None:
    from lifecycle.capture import watching
    from lifecycle.capture.follower import MAX_PROBLEMS
    from lifecycle.models import WatchedDatabase

    # Given more broken tables than the notice shows
    broken = MAX_PROBLEMS + 5
    for i in range(broken):
        app.write(f"CREATE TABLE t{i:02} (id int, status text)")
        watching.install(f"t{i:02}", "id", "status", database=app.url, name="jobs-db")
    app.write(*[f"ALTER TABLE t{i:02} DROP COLUMN status" for i in range(broken)])
    check_now(app, "jobs-db")
    # Then the follower records, and the home page shows, that many and how many more
    assert len(WatchedDatabase.objects.get(name="jobs-db").problem.split("\n")) == 21
    page = admin_client.get("/").content.decode()
    notice = page[page.index('data-testid="capture-problems"') : page.index("</section>")]
    assert notice.count("<pre><code>") == MAX_PROBLEMS
    assert "and 5 more broken tables: python manage.py lifecycle capture list" in notice


def test_the_mending_command_names_a_mixed_case_table_as_capture_install_takes_it(
    app: App,  # noqa: F811
) -> None:
    import shlex

    from lifecycle.capture import outbox
    from lifecycle.capture.trigger import mend_command

    # Given a table "Jobs" beside a table jobs, the first captured, then broken
    app.write(
        'CREATE TABLE "Jobs" (id int, status text)', "CREATE TABLE jobs (id int, status text)"
    )
    outbox.install(app.url, '"Jobs"', "id", "status")
    app.write('ALTER TABLE "Jobs" DROP COLUMN status, ADD COLUMN state text')
    ((table,),) = [[t for t in outbox.watched(app.url) if t.broken]]
    # When the command that mends it is run (its table argument, with the new status column)
    command = shlex.split(mend_command(table, app.url))
    mended = outbox.install(app.url, command[5], "id", "state", replace=True)
    # Then it mended "Jobs", not jobs
    assert (mended.table, mended.status) == ("Jobs", "state")
    assert [t.table for t in outbox.watched(app.url)] == ["Jobs"]


def test_a_superuser_does_not_give_the_functions_to_a_role_someone_made_to_act_as(
    app: App,  # noqa: F811
) -> None:
    from lifecycle.capture import outbox

    # Given the capture's owner role made before the first install by someone who may make
    # roles, able to log in (as it, they could make each writer's capture fail, or worse)
    with psycopg.connect(app.url, autocommit=True) as conn:
        (database,) = conn.execute("SELECT current_database()").fetchone()  # type: ignore[misc]
        conn.execute(
            pgsql.SQL("CREATE ROLE {} LOGIN").format(pgsql.Identifier(outbox.owner_role(database)))
        )
    # When a superuser installs, it is refused, saying why, and nothing is given to it
    with pytest.raises(CaptureError, match="exists, and can log in or has members"):
        outbox.install(app.url, "jobs_job", "id", "status")
    with psycopg.connect(app.url) as conn:
        (functions,) = conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner"
            " WHERE r.rolname = %s",
            [outbox.owner_role(database)],
        ).fetchone()  # type: ignore[misc]
    assert functions == 0


@pytest.mark.parametrize("command", ["list", "remove", "remove --all"])
def test_a_superuser_reads_no_capture_schema_another_role_owns(
    app: App,  # noqa: F811
    command: str,
) -> None:
    from lifecycle.capture import outbox, watching

    # Given the application's role installed the capture itself (it owns the schema), then
    # made its table of watched tables a view that runs a function of its own when read
    assert outbox.install(app.app_url, "jobs_job", "id", "status").mode == "any"
    ((role,),) = app.write("SELECT current_user")
    app.write(
        "CREATE FUNCTION public.escalate() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
        f" EXECUTE 'ALTER ROLE {role} SUPERUSER'; RETURN true;"
        " EXCEPTION WHEN OTHERS THEN RETURN true; END $$",
        "ALTER TABLE lifecycle_capture.watched RENAME TO watched_kept",
        "CREATE VIEW lifecycle_capture.watched AS SELECT * FROM lifecycle_capture.watched_kept"
        " WHERE public.escalate()",
    )
    # When a superuser lists, removes its table, or removes everything there, it is refused
    with pytest.raises(CaptureError, match="not to a superuser"):
        if command == "list":
            outbox.watched(app.url)
        else:
            watching.remove("jobs_job" if command == "remove" else None, database=app.url)
    # And nothing of the role's ran as a superuser
    ((superuser,),) = app.write("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    assert superuser is False


@pytest.mark.parametrize("cast_to", ["json", "text"])
def test_a_cast_of_the_applications_own_type_runs_none_of_its_code_in_the_capture(
    app: App,  # noqa: F811
    cast_to: str,
) -> None:
    from lifecycle.capture import outbox

    # Given a table whose status and another column are of an enum of the application's
    app.write(
        "CREATE TYPE st AS ENUM ('PENDING', 'RUNNING')",
        "CREATE TABLE t2 (id int PRIMARY KEY, status st, tags st[], previous st)",
    )
    outbox.install(app.url, "t2", "id", "status")
    # When the role makes a cast of its type run a function of its own
    app.write(
        FORGE,
        f"CREATE FUNCTION public.st_cast(st) RETURNS {cast_to} LANGUAGE plpgsql AS"
        f" $$ BEGIN PERFORM public.forge(); RETURN to_json($1::text)::{cast_to}; END $$",
        f"CREATE CAST (st AS {cast_to}) WITH FUNCTION public.st_cast(st)",
    )
    app.write("INSERT INTO t2 VALUES (1, 'PENDING', '{PENDING}', NULL)")
    app.write("UPDATE t2 SET status = 'RUNNING', previous = 'PENDING', tags = '{RUNNING}'")
    # Then the writes were captured, their values through the type's own output, and the
    # function never ran
    assert forged(app) == []
    insert, update = app.outbox()[-2:]
    assert insert[:3] == ("1", "insert", "PENDING")
    assert update[:5] == ("1", "update", "RUNNING", "PENDING", ["previous", "status", "tags"])
    assert update[5] == {"previous": "PENDING", "status": "RUNNING", "tags": "{RUNNING}"}


def test_a_json_value_jsonb_cannot_hold_never_fails_the_write(app: App) -> None:  # noqa: F811
    from lifecycle.capture import outbox

    # Given json columns (json cannot be compared, and may spell U+0000, which jsonb refuses)
    app.write(
        "CREATE DOMAIN doc AS json",
        "ALTER TABLE jobs_job ADD COLUMN j json, ADD COLUMN d doc, ADD COLUMN js json[]",
    )
    outbox.install(app.url, "jobs_job", "id", "status")
    # When rows hold such values, and plain ones
    (key,) = app.write(
        "INSERT INTO jobs_job (status, j, d, js) VALUES"
        ' (\'PENDING\', \'{"a": "\\u0000"}\', \'{"b": "\\u0000"}\', ARRAY[\'{"c": 1}\'::json])'
        " RETURNING id"
    )[0]
    app.write(f"UPDATE jobs_job SET j = '{{\"a\": 1}}', status = 'RUNNING' WHERE id = {key}")
    # Then the writes went through, the first values recorded as their text
    insert, update = app.outbox()[-2:]
    assert insert[5]["j"] == '{"a": "\\u0000"}' and insert[5]["d"] == '{"b": "\\u0000"}'
    assert update[4] == ["j", "status"] and update[5]["j"] == {"a": 1}
