"""The live feed and the hub against a real PostgreSQL.

Events are written by separate psycopg connections, as the trigger and the ingestor write
them, and the feed must hand each committed one over exactly once. Skipped when PostgreSQL
is unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from lifecycle.events import EventRecord
from lifecycle.feed.hub import ALL, Hub, get_hub
from lifecycle.feed.listener import LiveFeed, dsn_from_settings
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

CI = os.environ.get("CI", "").lower() == "true"
FAST: dict[str, Any] = {"grace": 0.2, "gap_poll_interval": 0.1, "ping_interval": 0.5}


def _postgres_error() -> str | None:
    try:
        dsn = make_conninfo(dsn_from_settings(), dbname="postgres")
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return str(exc).strip()
    return None


# Decided at collection, so that a skipped test never asks pytest-django for a database.
# In CI nothing is skipped: creating the test database fails instead.
PG_ERROR = _postgres_error()
requires_postgres = pytest.mark.skipif(
    PG_ERROR is not None and not CI, reason=f"PostgreSQL unreachable: {PG_ERROR}"
)


@pytest.fixture
def pg(transactional_db: None) -> str:
    """The migrated test database, whose commits other connections see: its DSN."""
    return dsn_from_settings()


async def fetches_after(feed: LiveFeed, n: int = 2) -> None:
    """Let the feed run ``n`` more fetches: time enough to deliver a duplicate, if it would."""
    target = feed.fetches + n
    await wait_until(lambda: feed.fetches >= target, f"{n} more fetches")


async def insert(conn: psycopg.AsyncConnection[Any], task: str, kind: str = "read") -> int:
    cur = await conn.execute(
        "INSERT INTO lifecycle_event (task_key, source, kind)"
        " VALUES (%s, 'probe', %s) RETURNING id",
        (task, kind),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@asynccontextmanager
async def following(
    dsn: str, start_after: int | None = None, **options: Any
) -> AsyncIterator[tuple[LiveFeed, list[EventRecord]]]:
    """A running feed and the list of events it delivered, in delivery order."""
    received: list[EventRecord] = []

    async def on_events(events: list[EventRecord]) -> None:
        received.extend(events)

    feed = LiveFeed(dsn, on_events, start_after, **options)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.connected.wait(), 5)
        yield feed, received
    finally:
        await feed.stop()
        assert task.done()


def ids(events: list[EventRecord]) -> list[int]:
    return [e.id for e in events]


# The feed.


@requires_postgres
async def test_delivers_each_committed_event_once_in_order(pg: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn:
        before = await insert(conn, "old")
        async with following(pg, **FAST) as (feed, received):
            # When events commit one by one, and then fifty in one transaction
            one_by_one = [await insert(conn, f"t{i}") for i in range(20)]
            async with conn.transaction():
                together = [await insert(conn, "bulk") for _ in range(50)]
            await wait_until(lambda: len(received) >= 70, "70 events")
            await fetches_after(feed)
        # Then each arrives once, in order, and nothing from before the start
        assert ids(received) == one_by_one + together
        assert before not in ids(received)
        assert feed.delivered == 70
        assert [e.task_key for e in received[:2]] == ["t0", "t1"]
        assert received[0].source == "probe" and received[0].uuid


@requires_postgres
async def test_start_after_delivers_what_followed_it(pg: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn:
        first, *later = [await insert(conn, "x") for _ in range(6)]
        # (in batches of two, to cross the fetch limit)
        async with following(pg, start_after=first, batch_size=2, **FAST) as (feed, received):
            await wait_until(lambda: len(received) >= 5, "the five later events")
            await fetches_after(feed)
    assert ids(received) == later


@requires_postgres
async def test_an_id_that_commits_after_a_later_one_is_not_lost(pg: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(pg) as slow,
        await psycopg.AsyncConnection.connect(pg, autocommit=True) as fast,
        following(pg, **FAST) as (feed, received),
    ):
        # Given A takes id n and stays open, and B takes n+1 and commits
        n = await insert(slow, "a")
        m = await insert(fast, "b")
        assert m == n + 1
        await wait_until(lambda: ids(received) == [m], "B's event")
        state = feed.state
        assert state is not None and n in state.gaps
        # While A stays open past the grace period, its id stays a gap
        await wait_until(lambda: state.gaps[n].bound is not None, "the gap's bound")
        await fetches_after(feed, 3)
        assert n in state.gaps and ids(received) == [m]
        # When A commits, its event is delivered, once
        await slow.commit()
        await wait_until(lambda: len(received) >= 2, "A's event")
        await fetches_after(feed)
    assert ids(received) == [m, n]
    assert n not in state.gaps


@requires_postgres
async def test_a_gap_outlives_older_transactions_that_end_before_its_own(pg: str) -> None:
    # The case a snapshot's xmax gets wrong: the holder's transaction id is above the
    # latest completed one plus one, because another transaction took an id in between.
    async with (
        await psycopg.AsyncConnection.connect(pg) as b,
        await psycopg.AsyncConnection.connect(pg) as other,
        await psycopg.AsyncConnection.connect(pg) as holder,
        following(pg, **FAST) as (feed, received),
    ):
        # Given B and another transaction take transaction ids, then the holder takes
        # event id n, and B takes n+1 and commits
        await b.execute("SELECT pg_current_xact_id()")
        await other.execute("SELECT pg_current_xact_id()")
        n = await insert(holder, "held")
        m = await insert(b, "b")
        await b.commit()
        await wait_until(lambda: ids(received) == [m], "B's event")
        state = feed.state
        assert state is not None
        await wait_until(lambda: state.gaps[n].bound is not None, "the gap's bound")
        # When the other, older transaction ends while the holder runs on
        await other.commit()
        await fetches_after(feed, 3)
        # Then the holder's id is still awaited, and delivered when it commits
        assert n in state.gaps and ids(received) == [m]
        await holder.commit()
        await wait_until(lambda: len(received) >= 2, "the holder's event")
        await fetches_after(feed)
    assert ids(received) == [m, n]


@requires_postgres
async def test_a_rolled_back_id_is_given_up(pg: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(pg) as aborted,
        await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn,
        following(pg, ping_interval=0.5) as (feed, received),  # default grace (1 s)
    ):
        # Given a transaction takes id n and rolls back, and n+1 commits
        n = await insert(aborted, "gone")
        await aborted.rollback()
        m = await insert(conn, "kept")
        await wait_until(lambda: ids(received) == [m], "the committed event")
        state = feed.state
        assert state is not None and n in state.gaps
        # Then the gap is proven dead within a few seconds, and nothing comes for n
        # (the gaps the start left for ids of earlier tests, truncated away, go too)
        took = await wait_until(lambda: not state.gaps, "the gap to be given up", timeout=10)
        print(f"rolled-back id given up after {took:.2f}s")
        await fetches_after(feed)
    assert ids(received) == [m]
    assert state.expired >= 1 and state.dropped == 0


@requires_postgres
async def test_survives_a_terminated_connection_and_delivers_what_it_missed(pg: str) -> None:
    name = f"lifecycle-feed-test-{uuid.uuid4().hex[:8]}"
    admin_dsn = make_conninfo(pg, dbname="postgres")
    async with (
        await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin,
        await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn,
        following(pg, application_name=name, **FAST) as (feed, received),
    ):
        first = await insert(conn, "before")
        await wait_until(lambda: ids(received) == [first], "the first event")
        cur = await conn.execute(
            "SELECT pid, datname FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        rows = await cur.fetchall()
        assert [r[0] for r in rows] == [feed.backend_pid]
        database = rows[0][1]

        # Given the feed's backend is killed and cannot come back for a while
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            killed_at = time.monotonic()
            await conn.execute("SELECT pg_terminate_backend(%s, 5000)", (feed.backend_pid,))
            await wait_until(lambda: not feed.connected.is_set(), "the feed to notice")
            assert feed.last_disconnect is not None
            print(f"dead connection noticed after {feed.last_disconnect - killed_at:.3f}s")
            assert feed.last_disconnect - killed_at < 3.0
            await wait_until(lambda: feed.connection_errors >= 2, "a refused reconnect")
            # When events commit while it is down (their NOTIFY reaches nobody)
            missed = [await insert(conn, "meanwhile") for _ in range(5)]
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

        # Then after it reconnects it delivers exactly those, and follows again
        await wait_until(lambda: feed.reconnects == 1, "the reconnect")
        await wait_until(lambda: len(received) >= 6, "the missed events")
        after = await insert(conn, "after")
        await wait_until(lambda: len(received) >= 7, "an event after the reconnect")
        await fetches_after(feed)
    assert ids(received) == [first, *missed, after]


# The hub.


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = get_hub()
    yield hub
    await hub.stop()


@requires_postgres
async def test_hub_gives_each_subscriber_its_topic(pg: str, hub: Hub) -> None:
    got: dict[str, list[EventRecord]] = {"a": [], "b": [], ALL: []}
    broken_calls: list[int] = []

    def collect(topic: str) -> Callable[[list[EventRecord]], Any]:
        async def callback(events: list[EventRecord]) -> None:
            got[topic].extend(events)

        return callback

    async def broken(events: list[EventRecord]) -> None:
        broken_calls.append(len(events))
        raise RuntimeError("subscriber bug")

    # Given subscribers on two task keys, on everything, and one that always fails
    await hub.ensure_started()
    for topic in got:
        hub.subscribe(topic, collect(topic))
    hub.subscribe("a", broken)
    # When events of three tasks commit
    async with await psycopg.AsyncConnection.connect(pg, autocommit=True) as conn:
        written = [(await insert(conn, key), key) for key in ["a", "b", "a", "c"]]
    await wait_until(lambda: len(got[ALL]) == 4, "all four events on '*'")
    await wait_until(lambda: len(got["a"]) == 2 and len(broken_calls) >= 1, "task a's events")
    # Then each sees only its own, and the failing one did not stop the others
    assert [(e.id, e.task_key) for e in got[ALL]] == written
    assert [e.id for e in got["a"]] == [i for i, key in written if key == "a"]
    assert [e.id for e in got["b"]] == [i for i, key in written if key == "b"]
    assert sum(broken_calls) == 2
    assert hub.feed is not None and hub.feed.callback_errors == 0
