"""Capture in an application's own database, on real PostgreSQL: a database other than the
inspector's, on the same server. Its commits reach the inspector's store exactly once,
whatever the order they commit in and whether the inspector was running; removing capture
leaves nothing behind there."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from psycopg import sql as pgsql

from tests.conftest import wait_for
from tests.services import require_postgres

require_postgres()

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TABLE = "billing.jobs"


@pytest.fixture
def app_db(make_database: Callable[..., str]) -> str:
    """A database of the application's own, created for the test, with its task table."""
    url = make_database("test_app")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA billing; CREATE TABLE billing.jobs ("
            " id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
            " state text NOT NULL DEFAULT 'queued', note text)"
        )
    return url


@pytest.fixture
def watched(app_db: str) -> str:
    from lifecycle.capture import watching

    watching.install(TABLE, "id", "state", database=app_db, name="billing-db")
    return app_db


def store_events(task: str) -> list[dict[str, Any]]:
    from lifecycle.models import Event

    return list(Event.objects.filter(task_key=task).order_by("id").values())


def start_follower(app_db: str):  # type: ignore[no-untyped-def]
    from lifecycle.capture.follower import Follower
    from lifecycle.runtime.database import conninfo

    follower = Follower("billing-db", app_db, conninfo(), poll_interval=0.2)
    follower.start()
    return follower


def test_commits_reach_the_store_once_with_writer_and_transaction(watched: str) -> None:
    # Given the follower running
    follower = start_follower(watched)
    try:
        # When the application creates a job and moves it, and a third write rolls back
        with psycopg.connect(watched, application_name="billing-worker") as conn:
            job = str(
                conn.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()[0]
            )  # type: ignore[index]
            conn.commit()
            conn.execute("UPDATE billing.jobs SET state = 'working' WHERE id = %s", [job])
            txid = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]  # type: ignore[index]
            conn.commit()
            conn.execute("UPDATE billing.jobs SET state = 'lost' WHERE id = %s", [job])
            conn.rollback()
        wait_for(lambda: len(store_events(job)) >= 2, 10, what="the two commits")
        time.sleep(0.5)  # time for a third, if the rolled-back write were to arrive
    finally:
        follower.stop()
        follower.join(5)
    # Then the store holds exactly the two commits, as the timeline shows them
    events = store_events(job)
    assert [(e["source"], e["kind"], e["status"]) for e in events] == [
        ("db", "insert", "queued"),
        ("db", "update", "working"),
    ]
    update = events[1]
    assert update["txid"] == txid
    assert update["body"]["application_name"] == "billing-worker"
    assert update["body"]["database"] == "billing-db"
    assert update["body"]["table"] == TABLE
    assert (update["body"]["old_status"], update["body"]["changed"]) == ("queued", ["state"])
    # And the outbox is empty: what is stored is deleted there
    with psycopg.connect(watched) as conn:
        assert conn.execute("SELECT count(*) FROM lifecycle_capture.outbox").fetchone() == (0,)


def test_a_writers_temp_tables_cannot_divert_the_outbox(watched: str) -> None:
    # Given a writer with temp tables named like the outbox and the event table
    with psycopg.connect(watched) as conn:
        conn.execute(
            "CREATE TEMP TABLE outbox (LIKE lifecycle_capture.outbox);"
            " CREATE TEMP TABLE lifecycle_event (id bigint)"
        )
        # When it writes a captured row
        conn.execute("INSERT INTO billing.jobs DEFAULT VALUES")
        conn.commit()
        # Then the change is in the real outbox, and its temp tables got nothing
        assert conn.execute("SELECT count(*) FROM pg_temp.outbox").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM lifecycle_capture.outbox").fetchone() == (1,)


def test_the_capture_functions_are_owned_by_a_role_that_may_only_write_the_outbox(
    watched: str,
) -> None:
    from lifecycle.capture import outbox

    with psycopg.connect(watched) as conn:
        superuser, database = conn.execute(
            "SELECT rolsuper, current_database() FROM pg_roles WHERE rolname = current_user"
        ).fetchone()  # type: ignore[misc]
        if not superuser:
            pytest.skip("the owner role is made by a superuser's install")
        role = outbox.owner_role(database)
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(proowner), proconfig FROM pg_proc"
            " WHERE pronamespace = 'lifecycle_capture'::regnamespace AND proname LIKE 'capture_%'"
        ).fetchall()
        assert owners == [(role, ["search_path=pg_catalog, pg_temp"])]
        rights = conn.execute(
            "SELECT has_table_privilege(%(r)s, 'lifecycle_capture.outbox', 'INSERT'),"
            " has_table_privilege(%(r)s, 'lifecycle_capture.outbox', 'SELECT'),"
            " has_table_privilege(%(r)s, 'billing.jobs', 'SELECT'),"
            " has_schema_privilege(%(r)s, 'lifecycle_capture', 'CREATE'),"
            " (SELECT rolcanlogin FROM pg_roles WHERE rolname = %(r)s),"
            " has_table_privilege(%(r)s, 'lifecycle_capture.listener', 'SELECT'),"
            " has_table_privilege(%(r)s, 'lifecycle_capture.listener', 'INSERT')",
            {"r": role},
        ).fetchone()
        # (it reads whether a follower waits for a NOTIFY, and may not say one does)
        assert rights == (True, False, False, False, False, True, False)
        # And the writers' commits still reach the outbox through it
        conn.execute("INSERT INTO billing.jobs DEFAULT VALUES")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM lifecycle_capture.outbox").fetchone() == (1,)
    # Removing the last table takes the role away with the schema
    outbox.remove_all(watched)
    with psycopg.connect(watched) as conn:
        gone = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [role])
        assert gone.fetchone() == (0,)


def test_an_id_that_commits_after_a_later_one_is_not_lost(watched: str) -> None:
    # Given two writers: the first takes the lower outbox id and commits last
    follower = start_follower(watched)
    try:
        with (
            psycopg.connect(watched) as first,
            psycopg.connect(watched) as second,
        ):
            early = str(
                first.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()[0]
            )  # type: ignore[index]
            late = str(
                second.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()[0]
            )  # type: ignore[index]
            second.commit()
            wait_for(lambda: len(store_events(late)) == 1, 10, what="the later id, committed first")
            # When the earlier id commits after the follower has copied the later one
            first.commit()
            # Then it is copied too
            wait_for(
                lambda: len(store_events(early)) == 1, 10, what="the earlier id, committed last"
            )
    finally:
        follower.stop()
        follower.join(5)


def test_what_commits_while_the_inspector_is_stopped_arrives_on_restart_once(watched: str) -> None:
    # Given commits made while no follower runs
    with psycopg.connect(watched, autocommit=True) as conn:
        jobs = [
            str(conn.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()[0])  # type: ignore[index]
            for _ in range(3)
        ]
    assert all(store_events(job) == [] for job in jobs)
    # And a follower that stored them and crashed before its delete reached the first one
    from lifecycle.capture.follower import copy_outbox
    from lifecycle.runtime.database import conninfo

    with (
        psycopg.connect(watched, autocommit=True) as app,
        psycopg.connect(conninfo(), autocommit=True) as store,
    ):
        app.execute(
            "CREATE TEMP TABLE kept AS SELECT * FROM lifecycle_capture.outbox WHERE task_key = %s",
            [jobs[0]],
        )
        copy_outbox(app, store, "billing-db")
        app.execute("INSERT INTO lifecycle_capture.outbox SELECT * FROM kept")
        # and two more commits while nothing follows
        jobs += [
            str(app.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()[0])  # type: ignore[index]
            for _ in range(2)
        ]
    assert [len(store_events(job)) for job in jobs] == [1, 1, 1, 0, 0]
    # When the follower starts
    follower = start_follower(watched)
    try:
        wait_for(lambda: follower.stats.fetches >= 2, 10, what="the follower's first fetches")
    finally:
        follower.stop()
        follower.join(5)
    # Then every job has its one insert: nothing lost, nothing doubled
    assert [len(store_events(job)) for job in jobs] == [1, 1, 1, 1, 1]
    assert follower.stats.duplicates == 1


def listeners(app_db: str) -> list[int]:
    with psycopg.connect(app_db, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM lifecycle_capture.listener")]


def follower_pid(app_db: str) -> int | None:
    with psycopg.connect(app_db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'lifecycle-follow'"
            " AND datname = current_database()"
        ).fetchone()
        return row[0] if row else None


def new_job(app_db: str) -> str:
    """One job written and committed at once; its key."""
    with psycopg.connect(app_db, autocommit=True) as conn:
        row = conn.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()
    return str(row[0])  # type: ignore[index]


def test_writers_notify_only_while_a_follower_waits(watched: str) -> None:
    # Given a session listening on the capture's channel, and no follower waiting
    with (
        psycopg.connect(watched, autocommit=True) as ear,
        psycopg.connect(watched, autocommit=True) as writer,
    ):
        ear.execute("LISTEN lifecycle_capture")
        assert listeners(watched) == []
        # When a writer commits, nothing is notified: its commit queues behind no one's
        writer.execute("INSERT INTO billing.jobs DEFAULT VALUES")
        assert list(ear.notifies(timeout=0.3)) == []
        # But once a follower says it waits, each commit wakes it (one NOTIFY a transaction)
        ear.execute("INSERT INTO lifecycle_capture.listener VALUES (pg_backend_pid())")
        with writer.transaction():
            writer.execute("INSERT INTO billing.jobs DEFAULT VALUES")
            writer.execute("UPDATE billing.jobs SET state = 'working'")
        heard = list(ear.notifies(timeout=2, stop_after=1))
        assert [n.channel for n in heard] == ["lifecycle_capture"]
        assert list(ear.notifies(timeout=0.3)) == []


def test_an_idle_follower_is_woken_and_a_busy_one_lets_writers_commit_without_notifying(
    watched: str,
) -> None:
    from lifecycle.capture.follower import Follower
    from lifecycle.runtime.database import conninfo

    # Given a follower that polls only every 30 s: what arrives sooner was notified
    follower = Follower("billing-db", watched, conninfo(), poll_interval=30.0)
    follower.start()
    try:
        wait_for(lambda: follower_pid(watched) is not None, 10, what="the follower's session")
        wait_for(
            lambda: listeners(watched) == [follower_pid(watched)], 10, what="the follower to wait"
        )
        # When one job is written, it arrives at once, woken by its NOTIFY
        job = new_job(watched)
        wait_for(lambda: len(store_events(job)) == 1, 3, what="a lone write, notified")

        # When four writers commit as fast as they can for 2 s
        seen_busy = threading.Event()
        done = threading.Event()
        written: list[str] = []
        notified = 0

        def write() -> None:
            with psycopg.connect(watched, autocommit=True) as conn:
                while not done.is_set():
                    row = conn.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id")
                    written.append(str(row.fetchone()[0]))  # type: ignore[index]

        def watch() -> None:
            nonlocal notified
            with psycopg.connect(watched, autocommit=True) as conn:
                conn.execute("LISTEN lifecycle_capture")
                while not done.is_set():
                    if not conn.execute("SELECT FROM lifecycle_capture.listener").fetchall():
                        seen_busy.set()
                    notified += len(list(conn.notifies(timeout=0.02)))

        threads = [threading.Thread(target=write) for _ in range(4)]
        threads.append(threading.Thread(target=watch))
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        done.set()
        for thread in threads:
            thread.join(10)
        # Then the follower took its row out while busy: most commits notified no one
        assert len(written) > 400, f"only {len(written)} commits in 2 s"
        assert seen_busy.is_set()
        assert notified < len(written) / 4, f"{notified} notifications for {len(written)} commits"
        # And every commit arrives once, long before the next poll
        from lifecycle.models import Event

        wait_for(
            lambda: Event.objects.filter(task_key__in=written).count() >= len(written),
            5,
            what="every commit of the burst",
        )
        assert Event.objects.filter(task_key__in=written).count() == len(written)
        # And once it is idle again, it waits, and a lone write is notified again
        wait_for(
            lambda: listeners(watched) == [follower_pid(watched)], 10, what="the follower to wait"
        )
        job = new_job(watched)
        wait_for(lambda: len(store_events(job)) == 1, 3, what="a lone write after the burst")
    finally:
        follower.stop()
        follower.join(5)
    # And a follower that stops takes its row with it
    assert listeners(watched) == []


def test_a_row_left_by_a_follower_that_died_is_cleared(watched: str) -> None:
    # Given the row of a follower whose session is gone
    with psycopg.connect(watched, autocommit=True) as conn:
        dead = conn.execute("SELECT max(pid) + 100000 FROM pg_stat_activity").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO lifecycle_capture.listener VALUES (%s)", [dead])
    # When a follower starts, it is replaced by the follower's own
    follower = start_follower(watched)
    try:
        wait_for(
            lambda: listeners(watched) == [follower_pid(watched)], 10, what="the stale row cleared"
        )
    finally:
        follower.stop()
        follower.join(5)


def test_a_waiting_follower_whose_row_went_puts_it_back(watched: str) -> None:
    from lifecycle.capture.follower import Follower
    from lifecycle.runtime.database import conninfo

    # Given a waiting follower that polls every 0.5 s and looks at its capture every 0.3 s
    follower = Follower("billing-db", watched, conninfo(), poll_interval=0.5, check_every=0.3)
    follower.start()
    try:
        wait_for(
            lambda: listeners(watched) == [follower_pid(watched)], 10, what="the follower to wait"
        )
        # When its row is gone (the schema was dropped and made anew meanwhile, say)
        with psycopg.connect(watched, autocommit=True) as conn:
            conn.execute("DELETE FROM lifecycle_capture.listener")
        # Then it is back at the next look, and writers notify it again
        wait_for(lambda: listeners(watched) == [follower_pid(watched)], 10, what="the row back")
    finally:
        follower.stop()
        follower.join(5)


def test_a_follower_of_an_older_install_is_woken_by_every_change(watched: str) -> None:
    from lifecycle.capture.follower import Follower
    from lifecycle.runtime.database import conninfo

    # Given capture as an older version installed it: no listener table, every change notifies
    waits = (
        "IF EXISTS (SELECT FROM lifecycle_capture.listener) THEN\n"
        "        sent := pg_notify('lifecycle_capture', '');\n    END IF;"
    )
    with psycopg.connect(watched, autocommit=True) as conn:
        (definition,) = conn.execute(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
            " WHERE p.pronamespace = 'lifecycle_capture'::regnamespace"
            " AND p.proname = 'capture_' || 'billing.jobs'::regclass::oid"
        ).fetchone()  # type: ignore[misc]
        assert waits in definition
        conn.execute(definition.replace(waits, "sent := pg_notify('lifecycle_capture', '');"))
        conn.execute("DROP TABLE lifecycle_capture.listener")
    # When a follower that polls every 30 s follows it
    follower = Follower("billing-db", watched, conninfo(), poll_interval=30.0)
    follower.start()
    try:
        wait_for(lambda: follower.stats.fetches >= 1, 10, what="the follower's first fetch")
        job = new_job(watched)
        # Then the change arrives at once all the same, without an error
        wait_for(lambda: len(store_events(job)) == 1, 3, what="a write to an older install")
        assert follower.stats.errors == 0
    finally:
        follower.stop()
        follower.join(5)


def test_a_burst_is_copied_once_in_order_with_each_commits_body(watched: str) -> None:
    from lifecycle.capture.follower import FollowStats, copy_outbox
    from lifecycle.runtime.database import conninfo

    # Given 3 jobs moved through 400 statuses each, in 1,200 transactions of one writer
    with psycopg.connect(watched, autocommit=True, application_name="billing-worker") as conn:
        jobs = [
            str(conn.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()[0])  # type: ignore[index]
            for _ in range(3)
        ]
        for n in range(400):
            for job in jobs:
                conn.execute("UPDATE billing.jobs SET state = %s WHERE id = %s", [f"s{n}", job])
        pid = conn.info.backend_pid
        user = conn.info.user
    # When the follower copies them, 500 a transaction
    stats = FollowStats()
    with (
        psycopg.connect(watched, autocommit=True) as app,
        psycopg.connect(conninfo(), autocommit=True) as store,
    ):
        assert copy_outbox(app, store, "billing-db", batch=500, stats=stats) == 1_203
        left = app.execute("SELECT count(*) FROM lifecycle_capture.outbox").fetchone()
    # Then each job's changes are in the store once, in the order they committed
    assert left == (0,) and (stats.copied, stats.duplicates, stats.fetches) == (1_203, 0, 3)
    for job in jobs:
        stored = store_events(job)
        assert [e["status"] for e in stored] == ["queued"] + [f"s{n}" for n in range(400)]
        assert stored[0]["kind"] == "insert" and {e["kind"] for e in stored[1:]} == {"update"}
        assert len({e["uuid"] for e in stored}) == 401
    # each with the body the README gives a commit from an application's database
    last = store_events(jobs[0])[-1]
    assert last["body"] == {
        "schema": 1,
        "table": "billing.jobs",
        "op": "UPDATE",
        "old_status": "s398",
        "new_status": "s399",
        "changed": ["state"],
        "values": {"state": "s399"},
        "application_name": "billing-worker",
        "pid": pid,
        "user": user,
        "database": "billing-db",
    }
    assert last["txid"] > 0 and last["source"] == "db"


def test_a_database_whose_sessions_write_dates_otherwise_is_copied_as_it_is(
    watched: str,
) -> None:
    from lifecycle.capture.follower import copy_outbox
    from lifecycle.runtime.database import conninfo

    # Given an application database whose sessions show dates day first, in another zone
    with psycopg.connect(watched, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(
            pgsql.SQL("ALTER DATABASE {} SET datestyle = 'SQL, DMY'").format(pgsql.Identifier(name))
        )
        conn.execute(
            pgsql.SQL("ALTER DATABASE {} SET timezone = 'Asia/Kathmandu'").format(
                pgsql.Identifier(name)
            )
        )
    with psycopg.connect(watched, autocommit=True) as conn:
        job = str(
            conn.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()[0]
        )  # type: ignore[index]
        # (psycopg itself cannot read such a session's times: the follower asks for ISO)
        (written,) = conn.execute(
            "SELECT extract(epoch FROM at) FROM lifecycle_capture.outbox"
        ).fetchone()  # type: ignore[misc]
        # When the follower copies its change, through such a session
        with psycopg.connect(conninfo(), autocommit=True) as store:
            copy_outbox(conn, store, "billing-db")
    # Then the event has the time of the write
    (event,) = store_events(job)
    assert abs(event["at"].timestamp() - float(written)) < 1e-6


def test_an_outbox_an_older_version_made_is_still_copied(watched: str) -> None:
    from lifecycle.capture.follower import copy_outbox
    from lifecycle.runtime.database import conninfo

    # Given changes in an outbox without the row_xmin column (made before it existed),
    # one of them written in a savepoint
    with psycopg.connect(watched) as conn:
        with conn.transaction():
            conn.execute("SAVEPOINT s")
            job = str(
                conn.execute("INSERT INTO billing.jobs DEFAULT VALUES RETURNING id").fetchone()[0]  # type: ignore[index]
            )
        conn.commit()
        conn.execute("ALTER TABLE lifecycle_capture.outbox DROP COLUMN row_xmin")
        conn.commit()
        # When the follower copies them
        with psycopg.connect(conninfo(), autocommit=True) as store:
            conn.autocommit = True
            assert copy_outbox(conn, store, "billing-db") == 1
    # Then the change is there, without the version the outbox did not keep
    (event,) = store_events(job)
    assert event["status"] == "queued" and "xmin" not in event["body"]


def test_list_shows_each_database_and_table_with_its_events(watched: str) -> None:
    from lifecycle.capture.follower import copy_outbox
    from lifecycle.runtime.database import conninfo

    with psycopg.connect(watched, autocommit=True) as conn:
        conn.execute("INSERT INTO billing.jobs DEFAULT VALUES")
        with psycopg.connect(conninfo(), autocommit=True) as store:
            copy_outbox(conn, store, "billing-db")
    out = io.StringIO()
    call_command("lifecycle", "capture", "list", stdout=out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("billing-db"))
    assert f")  {TABLE}  key=id  status=state  events=1  last=20" in line


def test_remove_all_leaves_nothing_of_ours_in_the_database(watched: str) -> None:
    # Given a change still in the outbox when capture is removed
    job = new_job(watched)
    out = io.StringIO()
    # When capture is removed from the whole database
    call_command("lifecycle", "capture", "remove", "--all", "--database", watched, stdout=out)
    # Then the change was copied first, and no schema, function or trigger of ours is left
    assert len(store_events(job)) == 1
    assert "nothing of ours is left there" in out.getvalue()
    with psycopg.connect(watched) as conn:
        leftovers = conn.execute(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'lifecycle_capture'),"
            " (SELECT count(*) FROM pg_trigger WHERE tgname = 'lifecycle_capture'),"
            " (SELECT count(*) FROM pg_proc WHERE proname LIKE 'capture\\_%%'"
            "   OR proname = 'cut')"
        ).fetchone()
    assert leftovers == (0, 0, 0)
    from lifecycle.models import WatchedDatabase

    assert not WatchedDatabase.objects.filter(url=watched).exists()


def test_a_password_in_the_url_is_never_shown(app_db: str) -> None:
    # Given a database address with a password (trust auth here ignores it)
    secret = "s3cret-" + uuid.uuid4().hex[:6]
    with_password = app_db + f" password={secret}"
    from lifecycle.capture import watching

    watching.install(TABLE, "id", "state", database=with_password, name="pw-db")
    out, err = io.StringIO(), io.StringIO()
    # When it is listed, and when a follower cannot reach it
    call_command("lifecycle", "capture", "list", stdout=out, stderr=err)
    unreachable = with_password + " port=1"  # the last one counts: nobody listens there
    from lifecycle.capture.follower import Follower
    from lifecycle.runtime.database import conninfo

    logs: list[str] = []
    handler = _ListHandler(logs)
    import logging

    logging.getLogger("lifecycle.capture.follower").addHandler(handler)
    follower = Follower("pw-db", unreachable, conninfo(), poll_interval=0.1)
    thread = threading.Thread(target=follower.run)
    thread.start()
    wait_for(lambda: follower.stats.errors >= 1, 10, what="a failed connection")
    follower.stop()
    thread.join(5)
    logging.getLogger("lifecycle.capture.follower").removeHandler(handler)
    # Then the password appears nowhere
    assert "pw-db" in out.getvalue() and "***" in out.getvalue()
    for text in [out.getvalue(), err.getvalue(), *logs]:
        assert secret not in text
    watching.remove(None, database=with_password)


class _ListHandler:
    level = 0

    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def handle(self, record: Any) -> None:
        self.sink.append(record.getMessage())


@pytest.fixture
def second_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on another port, started for the test."""
    import glob
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from tests.conftest import free_port
    from tests.services import skip_or_fail

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found or shutil.which("runuser") is None:
        skip_or_fail("initdb (PostgreSQL's server binaries) or runuser is missing")
    bin_dir = os.path.dirname(found[-1])
    # Not under pytest's temporary folder: that one is private to root, and the server
    # runs as postgres.
    where = Path(tempfile.mkdtemp(prefix="lifecycle-second-server-"))
    data, sockets = where / "data", where / "sockets"
    sockets.mkdir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(where, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(
        [*as_postgres, f"{bin_dir}/initdb", "-D", str(data), "-U", "app", "--auth=trust"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        " -c track_commit_timestamp=on"  # this server records commit times
    )
    # -l: the server writes to a file, not to pipes that subprocess.run would wait on.
    subprocess.run(
        [
            *as_postgres,
            f"{bin_dir}/pg_ctl",
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(sockets / "server.log"),
            "-w",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    url = f"postgres://app@127.0.0.1:{port}/postgres"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE SCHEMA billing; CREATE TABLE billing.jobs ("
                " id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
                " state text NOT NULL DEFAULT 'queued', note text)"
            )
        yield url
    finally:
        subprocess.run(
            [*as_postgres, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        shutil.rmtree(where, ignore_errors=True)


def test_a_database_on_another_server_is_followed_too(second_server: str) -> None:
    # Given capture installed on a table of another PostgreSQL server
    from lifecycle.capture import watching

    watching.install(TABLE, "id", "state", database=second_server, name="other-server")
    follower = start_follower(second_server)
    try:
        # When the application there commits a change
        job = new_job(second_server)
        # Then it reaches the inspector's store, from the other server
        wait_for(lambda: len(store_events(job)) == 1, 10, what="the other server's commit")
    finally:
        follower.stop()
        follower.join(5)
    (event,) = store_events(job)
    assert (event["status"], event["body"]["database"]) == ("queued", "billing-db")
    # with its commit time, which that server records: after the write, within a second
    from datetime import datetime

    committed = datetime.fromisoformat(event["body"]["committed_at"])
    assert timedelta(0) <= committed - event["at"] < timedelta(seconds=1)
    # And removing capture there leaves that server as it was
    removed, cleaned = watching.remove(None, database=second_server)
    assert cleaned and [t.name for _, t in removed] == [TABLE]
    with psycopg.connect(second_server) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'lifecycle_capture'"
        ).fetchone() == (0,)
