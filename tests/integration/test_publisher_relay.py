"""The publisher's relay process (``lifecycle.client.relay``): what a busy Dramatiq worker
process hands its events to, so that its own threads pay only an append per event.

What the relay adds to the publisher's promises (the rest is proved by
``test_publisher_busy``, whose tests run with and without a relay): a relay that dies is
replaced and given what it had not confirmed, and those events are the same events (the
store keeps each once); a relay that cannot start leaves the publisher sending from its
own thread; events the handing process drops are told by ``gap`` events that name it; a
forked child never holds its parent's relay open; ``close`` bounds the relay too. Real
RabbitMQ and PostgreSQL, real processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from lifecycle.client.publisher import Publisher
from lifecycle.models import Event
from tests.conftest import wait_for
from tests.integration.rabbit import message
from tests.services import require_postgres, require_rabbitmq

require_postgres()
require_rabbitmq()

pytestmark = pytest.mark.integration

UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/%2F"


def unique(what: str) -> str:
    return f"relay-{what}-{uuid.uuid4().hex[:8]}"


def relay_pid(publisher: Publisher) -> int:
    """The pid of the publisher's relay, once it is up."""

    def up() -> int | None:
        link = publisher._link
        process = link.process if link is not None else None
        return process.pid if process is not None and link.ready else None

    return wait_for(up, 15, what="the relay process up")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has ended too
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def test_a_relay_killed_mid_burst_is_replaced_and_nothing_is_lost_or_stored_twice(ingestor):
    # Given 4 threads emitting 6,000 events of 40 tasks (uuids made in the relay) for ~2 s
    publisher = Publisher(relay=True)
    first = relay_pid(publisher) if publisher.emit("broker", "enqueue", unique("warm"), {}) else 0
    tasks = [unique(f"kill-{i}") for i in range(40)]
    sent = [0] * 4

    def work(index: int) -> None:
        for n in range(1500):
            publisher.emit("broker", "enqueue", tasks[(index * 10) + n % 10], {"n": n // 10})
            sent[index] += 1
            time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()

    # When its relay is killed (SIGKILL: nothing flushed) in the middle of it
    wait_for(lambda: sum(sent) >= 2000, what="the burst under way")
    os.kill(first, signal.SIGKILL)
    for thread in threads:
        thread.join(60)

    # Then another relay took over, and every event arrived, each stored once
    assert publisher.flush(30)
    assert relay_pid(publisher) != first
    stats = publisher.stats()
    assert (stats.dropped, stats.queued) == (0, 0)

    def stored() -> list[tuple[str, int]]:
        rows = Event.objects.filter(task_key__in=tasks).values_list("task_key", "body")
        return [(task, body["n"]) for task, body in rows]

    wait_for(lambda: len(stored()) >= 6000, timeout=30, what="every event stored")
    time.sleep(0.5)  # one sent again under a new uuid would be stored by now
    found = stored()
    assert len(found) == 6000 and len(set(found)) == 6000
    publisher.close(5)


def test_a_relay_that_cannot_start_leaves_the_thread_sending(tap, monkeypatch):
    # Given an interpreter that is not Python (as under uWSGI, whose executable is uwsgi)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    publisher = Publisher(relay=True)
    task = unique("fallback")

    # When events are published
    sent = [message(task, n=n) for n in range(5)]
    for event in sent:
        publisher.publish(event)

    # Then, after a few tries, the publisher's own thread sends them
    assert publisher.flush(15)
    assert publisher._link is None
    got = []
    wait_for(
        lambda: got.extend(json.loads(body) for _, _, body in tap()) or len(got) >= 5,
        what="the events sent by the thread",
    )
    assert sorted(e["uuid"] for e in got) == sorted(e["uuid"] for e in sent)
    assert publisher.close(5)


def test_events_dropped_by_the_handing_process_are_told_with_its_pid(tap):
    # Given a relayed publisher whose buffer holds 50 events, while nothing is confirmed yet
    publisher = Publisher(relay=True, max_events=50)
    task = unique("full")

    # When 500 events come at once
    for n in range(500):
        publisher.emit("broker", "enqueue", task, {"n": n})

    # Then what did not fit is told by gap events of the handing process, not the relay's
    assert publisher.flush(15)
    stats = publisher.stats()
    assert stats.dropped > 0 and stats.published + stats.dropped == 500
    got: list[dict[str, Any]] = []

    def told() -> int:
        got.extend(json.loads(body) for _, _, body in tap())
        return sum(e["body"]["dropped"] for e in got if e["task"] == task and e["kind"] == "gap")

    wait_for(lambda: told() == stats.dropped, what="gap events for every dropped event")
    gaps = [e for e in got if e["kind"] == "gap" and e["task"] == task]
    assert {e["body"]["pid"] for e in gaps} == {os.getpid()}
    assert publisher.close(5)


def test_a_body_marshal_cannot_carry_is_sent_as_the_thread_would_send_it(tap):
    publisher = Publisher(relay=True)
    task = unique("odd-body")
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    publisher.emit("broker", "enqueue", task, {"when": when, "id": uuid.UUID(int=7)})
    assert publisher.flush(10)
    got: list[dict[str, Any]] = []
    wait_for(lambda: got.extend(json.loads(b) for _, _, b in tap()) or got, what="the event")
    assert got[0]["body"] == {"when": str(when), "id": str(uuid.UUID(int=7))}
    assert publisher.close(5)


def test_a_forked_child_does_not_hold_its_parents_relay_open():
    # Given a relayed publisher with a relay up
    publisher = Publisher(relay=True)
    publisher.emit("broker", "enqueue", unique("fork"), {})
    assert publisher.flush(10)
    pid = relay_pid(publisher)

    # When the process forks, and the child lives on without closing anything
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        time.sleep(6)
        os._exit(0)
    try:
        # Then the parent's close ends its relay at once (its input's end is not held by
        # the child), and within close's own time
        start = time.monotonic()
        assert publisher.close(5)
        assert time.monotonic() - start < 3
        wait_for(lambda: not alive(pid), 3, what="the parent's relay ended")
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_close_bounds_the_relay_while_a_broker_never_answers():
    # Given a "broker" that accepts connections and never speaks AMQP
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(10)
    try:
        url = f"amqp://guest:guest@127.0.0.1:{server.getsockname()[1]}/%2F"
        publisher = Publisher(url=url, namespace="x", connect_timeout=5, relay=True)
        publisher.publish(message(unique("hang")))
        conn, _ = server.accept()
        pid = relay_pid(publisher)

        # When the process closes with half a second to spare
        start = time.monotonic()
        assert not publisher.close(0.5)

        # Then close returns in its time, and the relay gives up with it: its socket closes
        assert time.monotonic() - start < 2.5
        conn.settimeout(3)
        try:
            while conn.recv(4096):
                pass
        except TimeoutError:
            pytest.fail("the relay's connection is still open 3 s after close()")
        conn.close()
        wait_for(lambda: not alive(pid), 3, what="the relay ended")
    finally:
        server.close()


def test_the_byte_limit_holds_in_the_relay_and_releases_the_handing_process():
    publisher = Publisher(url=UNREACHABLE, namespace="nowhere", max_bytes=1_000_000, relay=True)
    # When 200 events of 50 kB each come while RabbitMQ is out of reach (10 MB for 1 MB)
    for i in range(200):
        publisher.publish(message(unique("bytes"), pad=f"{i:05}" + "x" * 50_000))
    # Then the relay keeps about 1 MB of them and the handing process no longer holds the rest
    stats = wait_for(
        lambda: (s := publisher.stats()).dropped >= 180 and s,
        10,
        what="the events past the byte limit counted as dropped",
        detail=publisher.stats,
    )
    assert stats.queued <= 20, stats
    assert len(publisher._link.sent) <= 20
    publisher.close(0.5)


def test_a_worker_boot_starts_the_relay_before_the_first_message(monkeypatch):
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    from lifecycle.client import link
    from lifecycle.client.dramatiq_middleware import LifecycleEvents

    # Given the middleware with a publisher left to LIFECYCLE_RELAY (auto), as shipped
    monkeypatch.delenv("LIFECYCLE_RELAY", raising=False)
    monkeypatch.setattr(link, "in_worker", False)
    publisher = Publisher()
    broker = StubBroker(middleware=[LifecycleEvents(publisher=publisher)])

    # When a worker boots on its broker, before any message
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        # Then this is a worker process, and its relay is up already
        assert link.in_worker
        relay_pid(publisher)
        assert publisher.stats().queued == 0
    finally:
        worker.stop()
        broker.close()
    assert publisher.close(5)


def test_a_relayed_event_waits_for_one_linger_not_one_in_the_worker_and_one_in_the_relay():
    # Given a publisher handing its events to a relay, with a linger of 2 s
    publisher = Publisher(relay=True, linger=2.0)
    try:
        publisher.start()
        relay_pid(publisher)
        # When one event is emitted and nobody waits for it
        began = time.monotonic()
        publisher.emit("broker", "enqueue", unique("one-linger"), {})
        wait_for(lambda: publisher.stats().published == 1, 10, 0.02, "the event confirmed")
        took = time.monotonic() - began
        # Then it is confirmed after the worker's linger, not after the relay's too (4 s)
        assert 2.0 <= took < 3.2, took
    finally:
        publisher.close(5)
