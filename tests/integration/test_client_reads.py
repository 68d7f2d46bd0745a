"""The client's reads on real PostgreSQL: each returns what the application's own read would,
and reports it with the version (xmin) it read and the reader's snapshot."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from lifecycle.client import reads
from tests.conftest import wait_for
from tests.published import Published

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def job(conninfo: str) -> Iterator[tuple[str, int]]:
    """A row in a table of the 'application', and the transaction that wrote it."""
    key = str(uuid.uuid4())
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS client_jobs (id text PRIMARY KEY, state text NOT NULL)"
        )
        with conn.transaction():
            conn.execute("INSERT INTO client_jobs VALUES (%s, 'queued')", [key])
            txid = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]  # type: ignore[index]
    yield key, txid
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS client_jobs")


def assert_reported(published: Published, key: str, status: str, txid: int | None) -> None:
    (message,) = published.messages
    assert (message["source"], message["kind"], message["task"], message["status"]) == (
        "api",
        "read",
        key,
        status,
    )
    body = message["body"]
    assert body["xmin"] == (txid % 2**32 if txid is not None else None)
    xmin, xmax, _ = body["snapshot"].split(":")
    assert int(xmin) <= int(xmax)
    # the primary said it is one, in the same statement
    assert (body["standby"], body["replayed_at"]) == (False, None)


def test_a_psycopg_read_returns_the_row_and_reports_its_version(
    conninfo: str, job: tuple[str, int], published: Published
) -> None:
    key, txid = job
    with psycopg.connect(conninfo) as conn:
        row = reads.read_row(conn, "client_jobs", key, status_column="state", client="api-1")
        missing = reads.read_row(conn, "client_jobs", "nope", status_column="state")
    assert row == {"id": key, "state": "queued"}
    assert missing is None
    assert_reported(published, key, "queued", txid)
    assert published.messages[0]["body"]["client"] == "api-1"


async def test_an_async_psycopg_read_does_the_same(
    conninfo: str, job: tuple[str, int], published: Published
) -> None:
    key, txid = job
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        row = await reads.aread_row(conn, "public.client_jobs", key, status_column="state")
    assert row == {"id": key, "state": "queued"}
    assert_reported(published, key, "queued", txid)


def models() -> Any:
    sa = pytest.importorskip("sqlalchemy")
    from sqlalchemy import orm

    class Base(orm.DeclarativeBase):
        pass

    class Job(Base):
        __tablename__ = "client_jobs"
        id = orm.mapped_column(sa.Text, primary_key=True)
        state = orm.mapped_column(sa.Text)

    return sa, orm, Job


def sqlalchemy_url(conninfo: str, driver: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    return (
        f"postgresql+{driver}://{params.get('user', '')}@{params.get('host', '')}:"
        f"{params.get('port', 5432)}/{params['dbname']}"
    )


def test_a_sqlalchemy_read_returns_the_object_and_reports_its_version(
    conninfo: str, job: tuple[str, int], published: Published
) -> None:
    sa, orm, Job = models()
    key, txid = job
    engine = sa.create_engine(sqlalchemy_url(conninfo, "psycopg"))
    try:
        # (expire_on_commit=False: the session keeps what it loaded, a common set-up and the
        # "cached object" bug of this kind of system)
        with orm.Session(engine, expire_on_commit=False) as session:
            found = reads.read_object(session, Job, key, status="state")
            assert (found.id, found.state) == (key, "queued")
            assert_reported(published, key, "queued", txid)
            # When another transaction commits a new status and the session, which still
            # holds the object, reads it again
            with psycopg.connect(conninfo, autocommit=True) as other:
                other.execute("UPDATE client_jobs SET state = 'done' WHERE id = %s", [key])
            session.commit()  # a new transaction; the object stays in the identity map
            published.messages.clear()
            again = reads.read_object(session, Job, key, status="state")
    finally:
        engine.dispose()
    # Then the stale object it hands back is reported as what it is: a status with no
    # version this read can vouch for
    assert again.state == "queued"
    (message,) = published.messages
    assert message["status"] == "queued" and message["body"]["xmin"] is None


async def test_an_async_sqlalchemy_read_is_one_line(
    conninfo: str, job: tuple[str, int], published: Published
) -> None:
    sa, orm, Job = models()
    pytest.importorskip("greenlet")
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    key, txid = job
    engine = create_async_engine(sqlalchemy_url(conninfo, "psycopg"))
    try:
        async with AsyncSession(engine) as session:
            task = await reads.aread_object(session, Job, key, status="state")
    finally:
        await engine.dispose()
    assert task.state == "queued"
    assert_reported(published, key, "queued", txid)


# --- on a hot standby -----------------------------------------------------------------------


def on_standby(standby: str, conninfo: str) -> str:
    """The standby's URL of the test database, as ``conninfo``'s user and options read it."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    params.update(psycopg.conninfo.conninfo_to_dict(standby))
    return psycopg.conninfo.make_conninfo(**params)


def replayed(conninfo: str, key: str, timeout: float = 10.0) -> None:
    def there() -> bool:
        try:
            with psycopg.connect(conninfo) as conn:
                return bool(
                    conn.execute("SELECT 1 FROM client_jobs WHERE id = %s", [key]).fetchone()
                )
        except psycopg.errors.UndefinedTable:
            return False

    wait_for(there, timeout, 0.2, f"the standby to replay job {key}")


def test_every_read_helper_on_a_standby_says_so_and_how_far_it_replayed_in_one_statement(
    standby: str, conninfo: str, job: tuple[str, int], published: Published, monkeypatch: Any
) -> None:
    from datetime import datetime

    sa, orm, Job = models()
    key, txid = job
    replica = on_standby(standby, conninfo)
    replayed(replica, key)
    statements: list[str] = []
    real_execute = psycopg.Cursor.execute

    def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(query))
        return real_execute(self, query, *args, **kwargs)

    # When read_row and read_object read the job on the standby
    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    with psycopg.connect(replica) as conn:
        row = reads.read_row(conn, "client_jobs", key, status_column="state")
    assert len(statements) == 1  # no round trip of its own
    engine = sa.create_engine(sqlalchemy_url(replica, "psycopg"))
    try:
        with orm.Session(engine) as session:
            found = reads.read_object(session, Job, key, status="state")
    finally:
        engine.dispose()

    # Then both return the job, and report the same version, marked as a standby's read
    # with the time its replay had reached
    assert row == {"id": key, "state": "queued"} and found.state == "queued"
    assert len(published.messages) == 2
    for message in published.messages:
        body = message["body"]
        assert body["xmin"] == txid % 2**32
        assert body["standby"] is True
        replay = datetime.fromisoformat(body["replayed_at"])
        assert replay.tzinfo is not None


async def test_the_async_read_helpers_on_a_standby_say_so_too(
    standby: str, conninfo: str, job: tuple[str, int], published: Published
) -> None:
    sa, orm, Job = models()
    pytest.importorskip("greenlet")
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    key, _ = job
    replica = on_standby(standby, conninfo)
    replayed(replica, key)
    async with await psycopg.AsyncConnection.connect(replica) as conn:
        await reads.aread_row(conn, "client_jobs", key, status_column="state")
    engine = create_async_engine(sqlalchemy_url(replica, "psycopg"))
    try:
        async with AsyncSession(engine) as session:
            await reads.aread_object(session, Job, key, status="state")
    finally:
        await engine.dispose()
    assert [m["body"]["standby"] for m in published.messages] == [True, True]
    assert all(m["body"]["replayed_at"] for m in published.messages)
