"""The publisher attacked from outside: odd callers, odd values, a hostile environment.

Each test states what the publisher promises (module docstring, README "The event schema"
and "Settings"): ``publish``/``emit`` never raise or wait, an event that was taken is sent
or counted as dropped (never both, never neither), ``wait`` is True only for a confirmed
event, ``close`` ends cleanly. Real RabbitMQ behind ``TcpProxy`` where a fault is needed,
plain sockets for a broker that never answers; the real services are never stopped.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from lifecycle import events
from lifecycle.client import messages
from lifecycle.client.publisher import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_EVENTS,
    DEFAULT_LINGER,
    Publisher,
)
from lifecycle.scenarios.faults import TcpProxy
from tests.conftest import wait_for
from tests.integration.rabbit import message, proxied_url
from tests.services import require_postgres, require_rabbitmq

require_postgres()
require_rabbitmq()

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/%2F"


def unique(what: str) -> str:
    return f"attack-{what}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_publisher() -> Iterator[Callable[..., Publisher]]:
    """``Publisher(**kwargs)``, closed (briefly) after the test whatever happened."""
    made: list[Publisher] = []

    def make(**kwargs: Any) -> Publisher:
        publisher = Publisher(**kwargs)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.close(0.5)


def connected(publisher: Publisher) -> Publisher:
    """The publisher once its thread is connected and idle (one event sent and confirmed)."""
    publisher.publish(message(unique("warm")))
    assert publisher.flush(5)
    return publisher


class Arrivals:
    """What the tap saw, decoded, kept across calls (the tap drains its queue)."""

    def __init__(self, tap: Callable[[], list[tuple[Any, Any, bytes]]]) -> None:
        self.tap = tap
        self.seen: list[dict[str, Any]] = []

    def of(self, task: object, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The events of ``task`` arrived so far, once ``count`` did or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while True:
            self.seen += [json.loads(body) for _, _, body in self.tap()]
            mine = [e for e in self.seen if e["task"] == task]
            if len(mine) >= count or time.monotonic() > deadline:
                return mine
            time.sleep(0.02)


@pytest.fixture
def arrivals(tap: Callable[[], list[tuple[Any, Any, bytes]]]) -> Arrivals:
    return Arrivals(tap)


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a daemon thread; the dict gets its ``result`` or its ``error``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # what escapes is the finding
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- breaks: each test fails on the publisher as it is --------------------------------------


@pytest.mark.parametrize(
    "at",
    [math.nan, 1e12, datetime(2024, 1, 1, tzinfo=UTC)],
    ids=["nan", "year-33658", "a-datetime"],
)
def test_an_emit_with_an_unusable_time_does_not_stall_the_events_after_it(
    make_publisher, arrivals, at
):
    publisher = connected(make_publisher())
    task = unique("bad-at")
    # Given an emit whose ``at`` cannot be formatted (dropped: that much is fair)
    publisher.emit("broker", "enqueue", task, {"n": 0}, at=at)
    time.sleep(0.1)
    # When an ordinary event follows it
    publisher.emit("broker", "enqueue", task, {"n": 1})
    # Then that one is sent within the linger (20 ms), not held until 500 pile up or a flush
    got = arrivals.of(task, count=2, timeout=10.0)  # it, and the gap telling the bad one
    assert [e["body"]["n"] for e in got if e["kind"] != "gap"] == [1]
    # and the bad one is counted as dropped
    assert publisher.stats().dropped == 1


def test_a_gap_tells_why_its_events_were_dropped(make_publisher, arrivals):
    publisher = connected(make_publisher(max_bytes=100_000))
    unencodable, too_large = unique("unencodable"), unique("too-large")
    # Given events dropped for another cause than a full buffer: one that cannot be
    # encoded (its time cannot be formatted), one larger than the whole buffer
    publisher.emit("broker", "enqueue", unencodable, {"n": 0}, at=math.nan)
    publisher.publish(message(too_large, n=0, pad="x" * 200_000))
    # When the publisher tells the gaps
    assert publisher.flush(5)
    (bad,) = [e for e in arrivals.of(unencodable) if e["kind"] == "gap"]
    (big,) = [e for e in arrivals.of(too_large) if e["kind"] == "gap"]
    # Then each gap says what dropped its event, not that the buffer was full
    assert bad["body"]["dropped"] == 1
    assert bad["body"]["reason"].startswith("the publisher could not encode the event (")
    assert big["body"]["reason"] == (
        "the event was larger than the publisher's whole buffer (100000 bytes)"
    )
    assert publisher.stats().dropped == 2


def test_an_emit_with_an_unusable_time_never_raises_into_the_caller(make_publisher):
    publisher = make_publisher(url=UNREACHABLE, namespace="nowhere", max_events=1)
    publisher.emit("broker", "enqueue", unique("full"), {})
    # When the buffer is full, an emit with a NaN time is dropped: it must not raise
    assert publisher.emit("broker", "enqueue", unique("full"), {}, at=math.nan) is None
    assert publisher.stats().dropped == 1


def test_an_emit_before_the_epoch_carries_a_valid_time(make_publisher, arrivals):
    publisher = connected(make_publisher())
    task = unique("pre-epoch")
    times = [-1.5, -0.25, -86400.75]
    for n, at in enumerate(times):
        publisher.emit("broker", "enqueue", task, {"n": n}, at=at)
    assert publisher.flush(5)
    got = sorted(arrivals.of(task, count=3), key=lambda e: e["body"]["n"])

    def parsed(text: str) -> datetime | None:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None

    assert [parsed(e["at"]) for e in got] == [datetime.fromtimestamp(at, UTC) for at in times], [
        e["at"] for e in got
    ]


def test_an_emit_at_zero_is_the_epoch_not_now(make_publisher, arrivals):
    publisher = connected(make_publisher())
    task = unique("epoch")
    publisher.emit("broker", "enqueue", task, {}, at=0.0)
    assert publisher.flush(5)
    (got,) = arrivals.of(task)
    assert got["at"] == "1970-01-01T00:00:00.000000+00:00"


@pytest.mark.parametrize("poison", ["kind-of-300-chars", "uuid-object"])
def test_an_event_pika_cannot_frame_does_not_stall_every_event_after_it(
    make_publisher, arrivals, poison
):
    publisher = connected(make_publisher())
    task = unique("poison")
    # Given one event sent alone whose routing key (``source.kind``) or message id pika
    # cannot put in an AMQP short string (over 255 bytes; not a str)
    if poison == "kind-of-300-chars":
        publisher.emit("broker", "k" * 300, task, {"n": 0})
    else:
        odd = message(task, n=0)
        odd["uuid"] = uuid.uuid4()  # a UUID, not its text: json.dumps(default=str) copes
        publisher.publish(odd)
    time.sleep(0.1)
    # When the next event is published and waited for
    ticket = publisher.publish(message(task, n=1))
    confirmed = publisher.wait(ticket, 1.0)
    # Then it goes (whatever becomes of the odd one: sent another way, or dropped and told)
    assert 1 in [e["body"]["n"] for e in arrivals.of(task, count=1, timeout=5.0)]
    assert confirmed


def test_wait_is_false_for_an_event_dropped_as_too_big(make_publisher, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_BUFFER_BYTES", "4096")
    publisher = connected(make_publisher())
    # Given an event larger than the buffer's bytes (the thread drops it when it encodes it)
    ticket = publisher.publish(message(unique("too-big"), pad="x" * 10_000))
    assert ticket is not None
    # When its publisher waits for its confirm (as report_read(confirm=) does)
    confirmed = publisher.wait(ticket, 1.0)
    # Then it was dropped, never confirmed: wait must not say it was
    stats = publisher.stats()
    assert (stats.dropped, stats.published) == (1, 1)
    assert not confirmed


def test_wait_accepts_an_endless_timeout(make_publisher, rabbit_proxy):
    publisher = connected(make_publisher(url=proxied_url(rabbit_proxy), max_backoff=0.5))
    rabbit_proxy.cut()
    ticket = publisher.publish(message(unique("wait-inf")))
    # When a caller waits "for as long as it takes" while RabbitMQ is away
    waiter, outcome = in_thread(lambda: publisher.wait(ticket, math.inf))
    time.sleep(0.3)
    rabbit_proxy.restore()
    waiter.join(15)
    # Then it gets its confirm once RabbitMQ is back (no OverflowError from the lock)
    assert outcome == {"result": True}


def test_close_accepts_an_endless_timeout(make_publisher):
    publisher = connected(make_publisher())
    publisher.publish(message(unique("close-inf")))
    closer, outcome = in_thread(lambda: publisher.close(math.inf))
    closer.join(10)
    assert outcome == {"result": True}


def test_wait_with_a_nan_timeout_returns_at_once(make_publisher, rabbit_proxy):
    publisher = connected(make_publisher(url=proxied_url(rabbit_proxy), max_backoff=0.5))
    rabbit_proxy.cut()
    try:
        ticket = publisher.publish(message(unique("wait-nan")))
        # When a caller passes a timeout that is not a number
        waiter, outcome = in_thread(lambda: publisher.wait(ticket, math.nan))
        waiter.join(1.0)
        # Then it is treated as no wait (False), not as "spin until confirmed"
        assert outcome == {"result": False}
    finally:
        rabbit_proxy.restore()  # a spinning waiter ends once the event is confirmed


def test_an_event_published_after_close_is_sent_once_its_linger_ends(make_publisher, arrivals):
    publisher = connected(make_publisher(linger=0.2))
    task = unique("after-close")
    # Given an event lingering (its timer armed) when the process closes the publisher
    publisher.publish(message(task, n=0))
    time.sleep(0.05)
    assert publisher.close(5)
    # When it publishes again (a new thread, a new connection)
    publisher.publish(message(task, n=1))
    # Then that event goes once the 0.2 s linger ends, without a flush (waited for up to
    # 10 s: a new thread's new connection, beside two other shards, once took over 1.3 s)
    got = arrivals.of(task, count=2, timeout=10.0)
    assert sorted(e["body"]["n"] for e in got) == [0, 1]


def test_an_event_is_never_both_reported_dropped_and_sent(make_publisher, arrivals, monkeypatch):
    publisher = make_publisher()
    task = unique("no-thread")
    real_start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        if self.name == "lifecycle-publisher":
            raise RuntimeError("can't start new thread")  # what a process at its limit gets
        real_start(self)

    # Given a publish whose thread cannot be started
    monkeypatch.setattr(threading.Thread, "start", refuse)
    first = publisher.publish(message(task, n=0))
    monkeypatch.undo()
    # When the next one can start it
    publisher.publish(message(task, n=1))
    assert publisher.flush(5)
    got = arrivals.of(task, count=3, timeout=1.0)
    sent = sorted(e["body"]["n"] for e in got if e["kind"] != "gap")
    gaps = [e for e in got if e["kind"] == "gap"]
    # Then the first event was either dropped (None, a gap, not sent) or kept (a ticket,
    # sent, no gap): not reported lost to the caller and the timeline, and sent anyway
    assert (first is None, bool(gaps), sent) in [(True, True, [1]), (False, False, [0, 1])], (
        first,
        gaps,
        sent,
    )


def test_the_byte_limit_holds_while_rabbitmq_is_away(make_publisher):
    publisher = make_publisher(url=UNREACHABLE, namespace="nowhere", max_bytes=1_000_000)
    # When 200 events of 50 kB each come while RabbitMQ is out of reach (10 MB for 1 MB)
    for i in range(200):
        publisher.publish(message(unique("bytes"), pad=f"{i:05}" + "x" * 50_000))
    # Then the buffer keeps about 1 MB of them, and counts the rest as dropped
    stats = wait_for(
        lambda: (s := publisher.stats()).dropped >= 180 and s,
        5,
        what="the events past the byte limit counted as dropped",
        detail=publisher.stats,
    )
    assert stats.queued <= 20, stats


def open_connections(proxy: TcpProxy) -> int:
    """Sockets of the proxy's connections still open (both ends of each)."""
    with proxy._lock:
        pairs = list(proxy._pairs)
    return sum(1 for pair in pairs for sock in pair if sock.fileno() != -1)


def test_closing_from_several_threads_at_once_closes_the_connection(rabbit_proxy):
    publisher = connected(Publisher(url=proxied_url(rabbit_proxy)))
    assert open_connections(rabbit_proxy) == 2
    # When four threads close the publisher at once (atexit, a worker's shutdown, ...)
    together = threading.Barrier(4)

    def close() -> bool:
        together.wait()
        return publisher.close(5)

    closers = [in_thread(close) for _ in range(4)]
    for closer, _ in closers:
        closer.join(10)
    assert [outcome for _, outcome in closers] == [{"result": True}] * 4
    # Then its connection to RabbitMQ is closed, as after one close
    wait_for(lambda: open_connections(rabbit_proxy) == 0, 1.5, 0.05, "the connection closed")


def test_close_while_a_broker_never_answers_closes_the_socket(make_publisher):
    # Given a "broker" that accepts connections and never speaks AMQP
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(5)
    try:
        port = server.getsockname()[1]
        publisher = make_publisher(
            url=f"amqp://guest:guest@127.0.0.1:{port}/%2F", namespace="x", connect_timeout=5
        )
        ticket = publisher.publish(message(unique("hang")))
        conn, _ = server.accept()
        # publish, wait and close return within their own time (that much holds)
        assert not publisher.wait(ticket, 0.2)
        start = time.monotonic()
        assert not publisher.close(0.5)
        assert time.monotonic() - start < 2.0
        # When the publisher has closed, then its half-open connection is closed too
        conn.settimeout(1.5)
        received = b""
        try:
            while chunk := conn.recv(4096):
                received += chunk
            closed = True
        except TimeoutError:
            closed = False
        conn.close()
        assert received.startswith(b"AMQP")
        assert closed, "the socket is still open 1.5 s after close()"
    finally:
        server.close()


def test_publishing_from_a_signal_handler_does_not_deadlock():
    # A signal handler runs in the main thread between two bytecodes, perhaps while that
    # thread is inside publish() holding the publisher's lock; a handler that logs a warning
    # inside a task (the log handler publishes it) then publishes from that same thread.
    code = textwrap.dedent(
        """
        import os, signal, time
        from lifecycle.client import messages
        from lifecycle.client.publisher import Publisher

        publisher = Publisher(url="amqp://guest:guest@127.0.0.1:1/%2F", namespace="nowhere")

        def event():
            return messages.make_message(source="log", kind="warning", task="signal")

        signal.signal(signal.SIGALRM, lambda *_: publisher.publish(event()))
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        end = time.monotonic() + 0.8
        while time.monotonic() < end:
            publisher.publish(event())
        signal.setitimer(signal.ITIMER_REAL, 0)
        print("done", flush=True)
        os._exit(0)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        out, _ = child.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail("the process deadlocked: publish() from a signal handler waits for itself")
    assert out.strip() == "done"


def test_a_flush_after_the_thread_died_sends_what_it_holds(channel):
    # Given a process out of file descriptors when its first event comes: the publisher
    # thread cannot make its event loop, and dies (the event stays buffered)
    namespace = unique("emfile")
    code = textwrap.dedent(
        f"""
        import os, resource, socket, sys, time
        from lifecycle.client import messages
        from lifecycle.client.publisher import Publisher

        publisher = Publisher(url={settings.AMQP_URL!r}, namespace={namespace!r})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        hog = []
        try:
            while True:
                hog.append(socket.socket())
        except OSError:
            pass
        publisher.publish(messages.make_message(source="log", kind="warning", task="emfile"))
        time.sleep(0.3)
        for sock in hog:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # When descriptors are back and the process stops (atexit, a worker's shutdown)
        print(publisher.flush(5), publisher.close(5), flush=True)
        os._exit(0)
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        )
        # Then it sends the event (a new thread), rather than giving up because the old
        # thread is gone (only a later publish would have started another)
        assert done.stdout.split() == ["True", "True"], (done.stdout, done.stderr[-1500:])
    finally:
        channel.queue_delete(f"{namespace}.ingest")
        channel.exchange_delete(f"{namespace}.events")


def test_a_nan_linger_is_refused_like_the_setting(make_publisher, arrivals):
    publisher = connected(make_publisher(linger=math.nan))
    task = unique("nan-linger")
    cpu = time.process_time()
    publisher.publish(message(task))
    got = arrivals.of(task, timeout=10.0)
    spent = time.process_time() - cpu
    # Then the event goes (a linger that is no number of seconds is the default's, as the
    # setting's is), and the thread does not spin meanwhile
    assert len(got) == 1
    assert spent < 0.5, spent


def test_numeric_django_settings_are_used():
    # README: "In a Django process the client reads its settings from settings.py"; there
    # ``LIFECYCLE_BUFFER_EVENTS = 50_000`` is an int, not the environment's text
    with override_settings(LIFECYCLE_BUFFER_EVENTS=3, LIFECYCLE_PUBLISH_LINGER=0.5):
        publisher = Publisher(url=UNREACHABLE, namespace="nowhere")
    assert (publisher.max_events, publisher.linger) == (3, 0.5)


def test_emit_with_an_integer_task_key_sends_an_event_the_ingestor_accepts(make_publisher, tap):
    publisher = connected(make_publisher())
    task = int(uuid.uuid4().int % 10**12)  # a model's primary key, as callers have them
    publisher.emit("api", "read", task, {"http_status": 200})  # type: ignore[arg-type]
    assert publisher.flush(5)
    deadline = time.monotonic() + 5
    mine: list[bytes] = []
    while not mine and time.monotonic() < deadline:
        mine = [b for _, _, b in tap() if json.loads(b)["task"] in (task, str(task))]
    (body,) = mine
    # The ingestor stores it (a task key is text), rather than dead-lettering it
    assert events.parse_message(body).task_key == str(task)


# -- what held: cheap checks that stay true ---------------------------------------------------


def test_close_right_after_the_first_publish_sends_it_and_a_second_close_is_harmless(
    make_publisher, arrivals
):
    publisher = make_publisher()
    task = unique("close-at-once")
    publisher.publish(message(task))
    assert publisher.close(5)
    assert publisher.close(5)
    assert len(arrivals.of(task)) == 1
    assert publisher.stats().queued == 0


def test_a_cut_mid_burst_loses_nothing_and_keeps_each_tasks_order(
    make_publisher, arrivals, rabbit_proxy
):
    publisher = connected(make_publisher(url=proxied_url(rabbit_proxy), max_backoff=0.5))
    tasks = [unique(f"cut-{i}") for i in range(5)]

    def burst() -> None:
        for i in range(3000):
            publisher.publish(message(tasks[i % 5], n=i))
            if i % 500 == 499:
                time.sleep(0.005)

    writer, _ = in_thread(burst)
    time.sleep(0.01)
    rabbit_proxy.cut()  # mid-batch, with messages in flight
    time.sleep(0.3)
    rabbit_proxy.restore()
    writer.join(10)
    assert publisher.flush(20)
    for task in tasks:
        first: dict[str, int] = {}
        for e in arrivals.of(task, count=600, timeout=5):
            first.setdefault(e["uuid"], e["body"]["n"])  # at least once: the first arrival
        ns = list(first.values())
        assert len(ns) == 600 and ns == sorted(ns)
    stats = publisher.stats()
    assert (stats.dropped, stats.queued) == (0, 0)


def test_a_thousand_threads_publishing_at_once(make_publisher, arrivals):
    publisher = make_publisher()
    task = unique("threads")
    count, each = 1000, 5
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []
    confirmed: list[bool] = []

    def work(j: int) -> None:
        try:
            barrier.wait()
            ticket = None
            for k in range(each):
                ticket = publisher.emit("broker", "enqueue", task, {"j": j, "k": k})
            if j % 100 == 0:
                confirmed.append(publisher.wait(ticket, 10))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(j,), daemon=True) for j in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and confirmed == [True] * 10
    assert publisher.flush(20)
    got = arrivals.of(task, count=count * each, timeout=10)
    order: dict[int, list[int]] = {}
    for e in got:
        order.setdefault(e["body"]["j"], []).append(e["body"]["k"])
    assert len(order) == count and all(ks == list(range(each)) for ks in order.values())
    assert publisher.stats().dropped == 0


def test_unencodable_bodies_are_dropped_and_told_and_the_rest_goes_on(make_publisher, arrivals):
    publisher = connected(make_publisher())
    task = unique("bodies")
    circular: dict[str, Any] = {}
    circular["me"] = circular
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    publisher.emit("broker", "enqueue", task, {"n": 0, "loop": circular})
    publisher.publish(message(task, n=1, loop=circular))
    publisher.emit("broker", "enqueue", task, {"n": 2, "deep": deep})
    publisher.emit("broker", "enqueue", task, {"n": 3, "set": {1}, "when": datetime(2024, 1, 1)})
    publisher.emit("broker", "enqueue", task, {"n": 4, (1, 2): "a tuple key"})
    publisher.emit("broker", "enqueue", task, {"n": 5})
    assert publisher.flush(5)

    def dropped(events: list[dict[str, Any]]) -> int:
        return sum(e["body"]["dropped"] for e in events if e["kind"] == "gap")

    # (one gap event per round of sending that dropped some: how many in all is what counts,
    # so the events are waited for until the gaps tell four, or 10 s, not until three came)
    got = arrivals.of(task, count=3, timeout=10)
    deadline = time.monotonic() + 10
    while dropped(got) < 4 and time.monotonic() < deadline:
        got = arrivals.of(task, count=len(got) + 1, timeout=0.5)
    sent = {e["body"]["n"]: e["body"] for e in got if e["kind"] != "gap"}
    assert sorted(sent) == [3, 5]
    assert sent[3]["set"] == "{1}" and sent[3]["when"] == "2024-01-01 00:00:00"  # str()'d
    assert dropped(got) == 4
    assert publisher.stats().dropped == 4


def test_an_event_over_a_mebibyte_goes_alone_and_the_rest_still_batch(make_publisher, arrivals):
    publisher = connected(make_publisher())
    task = unique("huge")
    publisher.publish(message(task, n=0))
    publisher.publish(message(task, n=1, pad="x" * (2 * 1024 * 1024)))
    for n in range(2, 50):
        publisher.publish(message(task, n=n))
    assert publisher.flush(10)
    got = arrivals.of(task, count=50)
    assert [e["body"]["n"] for e in got] == list(range(50))
    assert publisher.stats().published == 51


def test_garbage_settings_fall_back_to_the_defaults(monkeypatch):
    for value in ("nan", "-1", "inf", "1e9", "abc", "0x10", ""):
        monkeypatch.setenv("LIFECYCLE_PUBLISH_LINGER", value)
        monkeypatch.setenv("LIFECYCLE_BUFFER_EVENTS", value)
        monkeypatch.setenv("LIFECYCLE_BUFFER_BYTES", value)
        publisher = Publisher(url=UNREACHABLE, namespace="nowhere")
        assert (publisher.linger, publisher.max_events, publisher.max_bytes) == (
            DEFAULT_LINGER,
            DEFAULT_BUFFER_EVENTS,
            DEFAULT_BUFFER_BYTES,
        ), value
    monkeypatch.setenv("LIFECYCLE_PUBLISH_LINGER", "0")
    assert Publisher(url=UNREACHABLE, namespace="nowhere").linger == 0.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forks_while_another_thread_publishes(make_publisher, arrivals):
    publisher = connected(make_publisher())
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            publisher.publish(message(unique("parent")))
            time.sleep(0.0005)

    hammering, _ = in_thread(hammer)
    time.sleep(0.1)
    children = [unique(f"child-{k}") for k in range(3)]
    try:
        for task in children:
            pid = os.fork()
            if pid == 0:  # a child, forked mid-publish: its own buffer and thread
                code = 1
                try:
                    for n in range(20):
                        publisher.publish(message(task, n=n))
                    code = 0 if publisher.close(5) and publisher.stats().published == 20 else 3
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        hammering.join(5)
    for task in children:
        assert sorted(e["body"]["n"] for e in arrivals.of(task, count=20)) == list(range(20))
    assert publisher.flush(5)


def test_a_message_made_by_make_message_and_one_by_emit_are_the_same_bytes(make_publisher, tap):
    # _build promises messages.encode's bytes, at half the cost: check it on an odd body
    publisher = connected(make_publisher())
    task = unique("same-bytes")
    body = {"é": "\u2028\ud800", "n": [1.5, None, True], "k": {"1": 2}}
    at = 1_700_000_000.25
    publisher.emit("api", "read", task, body, at=at, status="seen", txid=7)
    assert publisher.flush(5)
    deadline = time.monotonic() + 5
    mine: list[bytes] = []
    while not mine and time.monotonic() < deadline:
        mine = [b for _, _, b in tap() if json.loads(b)["task"] == task]
    (raw,) = mine
    sent = json.loads(raw)
    expected = messages.make_message(
        source="api",
        kind="read",
        task=task,
        status="seen",
        at=datetime.fromtimestamp(at, UTC),
        txid=7,
        body=body,
    )
    expected["uuid"] = sent["uuid"]
    assert raw == messages.encode(expected)
