"""Fixtures the tests over RabbitMQ share (test_ingest, test_publisher_*): a channel on the
test namespace's topology, a queue that taps every event of its exchange (a batch split into
its events), the real RabbitMQ behind a proxy a test can cut, a running ingestor. A module
using them requires PostgreSQL and RabbitMQ itself (``tests.services``). And the websocket
consumers' tests share the live feed's hub (``hub``) and open reading (``public_read``);
the tests over PostgreSQL, sessions of their own (``conninfo``, ``writer``, ``reader``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg import sql as pgsql

from lifecycle import events
from lifecycle.client.config import exchange_name
from lifecycle.ingest import dead_queue_name, declare_topology, ingest_queue_name
from lifecycle.scenarios.faults import TcpProxy, tcp_proxy
from tests.conftest import wait_for
from tests.integration.rabbit import queue_state

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def conninfo(postgres: None) -> str:
    """The test database as a conninfo whose sessions the capture trigger records as
    ``lifecycle-test-writer``."""
    from lifecycle.runtime.database import conninfo

    return conninfo(application_name="lifecycle-test-writer")


@pytest.fixture
def make_database(postgres: None) -> Iterator[Callable[..., str]]:
    """``make_database(prefix, owner=None)``: a database of an application's own, made for
    the test, as a conninfo; dropped after it, with the role its capture functions were
    given (a role is the cluster's: it outlives the database) and then ``owner``."""
    from lifecycle.runtime.database import conninfo

    admin = conninfo(dbname="postgres")
    made: list[tuple[str, str | None]] = []

    def make(prefix: str, owner: str | None = None) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        create = pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name))
        if owner:
            create += pgsql.SQL(" OWNER {}").format(pgsql.Identifier(owner))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(create)
        made.append((name, owner))
        return conninfo(dbname=name)

    try:
        yield make
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name, owner in made:
                conn.execute(
                    pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        pgsql.Identifier(name)
                    )
                )
                for role in (f"{name}_lifecycle_capture"[:63], owner):
                    if role:
                        drop = pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role))
                        conn.execute(drop)


@pytest.fixture
def writer(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    """A session of its own, like the lab worker's: nothing shares Django's connection."""
    with psycopg.connect(conninfo) as conn:
        yield conn


@pytest.fixture
def reader(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    """A session of its own in autocommit: each query sees what has committed by then."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def public_read(settings: Any) -> None:
    """Sockets of a communicator carry no session: reading is open (test_access covers
    refusal)."""
    settings.LIFECYCLE_PUBLIC_READ = True


@pytest.fixture
async def hub(postgres: None) -> Any:
    """The process's feed hub, stopped after the test (its LISTEN connection closed)."""
    from lifecycle.feed.hub import get_hub

    yield get_hub()
    await get_hub().stop()


@pytest.fixture
def channel() -> Iterator[Any]:
    """A channel on the test namespace's topology, with the ingest and dead queues empty."""
    conn = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    ch = conn.channel()
    declare_topology(ch)
    ch.queue_purge(ingest_queue_name())
    ch.queue_purge(dead_queue_name())
    yield ch
    conn.close()


@pytest.fixture
def tap(channel: Any) -> Callable[..., list[tuple[Any, Any, bytes]]]:
    """A private queue bound to every event on the exchange; call it to drain what arrived."""
    queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, exchange_name(), routing_key="#")

    def drain() -> list[tuple[Any, Any, bytes]]:
        """Each event that arrived: a batch message (routing key ``batch``) as its events,
        each with the routing key it would have had alone."""
        got: list[tuple[Any, Any, bytes]] = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return got
            if method.routing_key != "batch":
                got.append((method, properties, body))
                continue
            for item in json.loads(body):
                alone = types.SimpleNamespace(routing_key=f"{item['source']}.{item['kind']}")
                got.append((alone, properties, events.encode(item)))

    return drain


@pytest.fixture
def rabbit_proxy() -> Iterator[TcpProxy]:
    """The real RabbitMQ behind a proxy this test can cut, as if RabbitMQ went down."""
    url = pika.URLParameters(settings.AMQP_URL)
    with tcp_proxy(url.host, url.port) as proxy:
        yield proxy


@pytest.fixture
def ingestor(transactional_db: None, channel: Any, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """``manage.py lifecycle ingest`` as its own process, on pytest-django's test database."""
    db = connection.settings_dict
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    url = f"postgres://{credentials}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "LIFECYCLE_NAMESPACE": settings.LIFECYCLE_NAMESPACE,
        "LOG_LEVEL": "INFO",
    }
    log = (tmp_path / "ingest.log").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "lifecycle",
            "ingest",
            "--batch-ms",
            "20",
            "--log-every",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.log = log  # type: ignore[attr-defined]
    try:
        wait_for(
            lambda: queue_state(channel, ingest_queue_name())[1] >= 1 or proc.poll() is not None
        )
        assert proc.poll() is None, Path(log.name).read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
