"""The relay (``lifecycle.client.link``, ``relay``) attacked: each test states a promise of
those modules' docstrings (or the publisher's) that the relayed publisher broke. Real
RabbitMQ, real relay processes; each test failed on the code as it was.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lifecycle.client import link
from lifecycle.client.publisher import Publisher
from tests.conftest import wait_for
from tests.integration.rabbit import message
from tests.services import require_postgres, require_rabbitmq

require_postgres()
require_rabbitmq()

pytestmark = pytest.mark.integration


def unique(what: str) -> str:
    return f"rattack-{what}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_publisher() -> Iterator[Callable[..., Publisher]]:
    """``Publisher(relay=True, **kwargs)``, closed (briefly) after the test; any relay a
    test stopped is let go on again first."""
    made: list[Publisher] = []

    def make(**kwargs: Any) -> Publisher:
        publisher = Publisher(relay=True, **kwargs)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        link = publisher._link
        if link is not None and link.process is not None:
            try:
                os.kill(link.process.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        publisher.close(0.5)


def relay_pid(publisher: Publisher) -> int:
    def up() -> int | None:
        link = publisher._link
        process = link.process if link is not None else None
        return process.pid if process is not None and link.ready else None

    return wait_for(up, 15, interval=0.02, what="the relay process up")


def warm(publisher: Publisher) -> int:
    """The pid of the publisher's relay once one event went through it."""
    publisher.publish(message(unique("warm")))
    assert publisher.flush(15)
    return relay_pid(publisher)


def state(pid: int) -> str | None:
    """The process's state letter (``Z``: a zombie nobody waited for); None once reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def decoded(tap: Callable[[], list[tuple[Any, Any, bytes]]], seen: list[dict[str, Any]]) -> list:
    seen += [json.loads(body) for _, _, body in tap()]
    return seen


def test_wait_on_an_event_already_handed_does_not_wait_out_the_relays_linger(make_publisher):
    # Given a relayed publisher lingering 1 s, whose relay was handed an event just now
    publisher = make_publisher(linger=1.0)
    warm(publisher)
    ticket = publisher.emit("broker", "enqueue", unique("linger"), {})
    wait_for(lambda: not publisher._buffer, 3, interval=0.01, what="the event handed")

    # When a caller waits for it (``wait``: "sent at once, without waiting for the linger")
    start = time.monotonic()
    confirmed = publisher.wait(ticket, 0.6)

    # Then it is confirmed at once, as the thread would (not after the relay's own linger:
    # the handing side lingered once, the relay lingers again, and ``wait``'s urgency never
    # reaches a relay once the event left the handing process's buffer)
    assert confirmed, f"not confirmed within 0.6 s (waited {time.monotonic() - start:.2f}s)"


def test_a_fallback_thread_sends_a_relayed_event_again_under_the_same_uuid(
    make_publisher, tap, monkeypatch
):
    # Given a relay that published an event, RabbitMQ confirmed it, and the relay died
    # before the handing process read its report
    publisher = make_publisher()
    first = warm(publisher)
    decoded(tap, [])
    link = publisher._link
    link._read = lambda: None  # the report stays in the pipe
    task = unique("fallback")
    publisher.emit("broker", "enqueue", task, {"n": 1})
    seen: list[dict[str, Any]] = []
    wait_for(
        lambda: any(e["task"] == task for e in decoded(tap, seen)), 5, what="the relay sent it"
    )
    time.sleep(0.3)  # its report written
    os.kill(first, signal.SIGKILL)
    os.read(link.process.stdout.fileno(), 1 << 16)  # its report: lost with it

    # When no relay can be started any more: the publisher's own thread takes over
    monkeypatch.setattr(sys, "executable", "/bin/false")
    del link._read  # the class's again
    assert publisher.flush(15)
    assert publisher._link is None
    wait_for(
        lambda: len([e for e in decoded(tap, seen) if e["task"] == task]) >= 2,
        5,
        what="the event sent again by the thread",
    )

    # Then it is the same event (same uuid: the store keeps it once), not a second one
    uuids = {e["uuid"] for e in seen if e["task"] == task}
    assert len(uuids) == 1, f"one event stored as {len(uuids)}: {uuids}"


def test_gaps_handed_to_a_relay_that_dies_are_told_by_the_next(make_publisher, tap):
    # Given a relayed publisher holding 2 events, whose relay is stopped (SIGSTOP)
    publisher = make_publisher(max_events=2)
    pid = warm(publisher)
    os.kill(pid, signal.SIGSTOP)
    task = unique("gap")

    # When 3 events come (one dropped: the buffer is full), are handed to the stopped relay
    # with the gap that tells the dropped one, and that relay is killed
    for n in range(3):
        publisher.emit("broker", "enqueue", task, {"n": n})
    assert publisher.stats().dropped == 1
    wait_for(lambda: not publisher._gaps and not publisher._link.out, 3, interval=0.02)
    time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)

    # Then the next relay sends the 2 events and a gap event for the dropped one
    assert publisher.flush(10)
    seen: list[dict[str, Any]] = []

    def told() -> int:
        decoded(tap, seen)
        return sum(e["body"]["dropped"] for e in seen if e["task"] == task and e["kind"] == "gap")

    wait_for(lambda: told() == 1, 4, what="a gap event for the dropped event")


def test_a_relay_left_to_flush_after_close_is_not_left_a_zombie(make_publisher):
    # Given a "broker" that accepts connections and never speaks AMQP
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        url = f"amqp://guest:guest@127.0.0.1:{server.getsockname()[1]}/%2F"
        publisher = make_publisher(url=url, namespace="x", connect_timeout=5)
        publisher.publish(message(unique("zombie")))
        pid = relay_pid(publisher)

        # When close gives up on the relay (it goes on flushing on its own, then ends)
        assert not publisher.close(0.5)
        wait_for(lambda: state(pid) in (None, "Z"), 5, what="the relay ended")

        # Then nobody is left waiting on it: no zombie stays behind in this process
        time.sleep(0.5)
        assert state(pid) != "Z", f"relay {pid} is a zombie after close()"
    finally:
        server.close()


def test_a_stopped_relay_is_replaced(make_publisher, monkeypatch):
    # Given a relayed publisher whose relay stops (SIGSTOP; a hung interpreter is the same),
    # given up on after 1 s of silence (here; SILENT_FOR, 5 s by default)
    monkeypatch.setattr(link, "SILENT_FOR", 1.0, raising=False)
    publisher = make_publisher()
    pid = warm(publisher)
    os.kill(pid, signal.SIGSTOP)

    # When events come
    tickets = [publisher.emit("broker", "enqueue", unique("stopped"), {}) for _ in range(5)]

    # Then they are not held for ever behind it: the relay (its heartbeat silent) is
    # replaced and they are confirmed (else the buffer fills and every later event drops)
    try:
        assert publisher.wait(tickets[-1], 4.5), "held behind a stopped relay"
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:  # killed and reaped: replaced
            pass


def test_events_handed_at_once_never_make_a_frame_longer_than_the_relay_takes(
    make_publisher, tap, monkeypatch
):
    # Given a relay that takes frames of at most MAX_FRAME bytes (here 300 kB for 256 MiB:
    # a longer one ends the relay, and each relay after it, given the same events again)
    monkeypatch.setattr(link, "MAX_FRAME", 300_000)
    publisher = make_publisher(linger=0.5)
    warm(publisher)
    stream = bytearray()  # what the handing process writes to its relay from now on

    class Os:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def write(self, fd: int, data: Any) -> int:
            written = os.write(fd, data)
            link = publisher._link
            stdin = link.process.stdin if link is not None and link.process is not None else None
            if stdin is not None and not stdin.closed and fd == stdin.fileno():
                stream.extend(bytes(data[:written]))
            return written

    monkeypatch.setattr(link, "os", Os())

    # When 4 events of 120 kB each are handed together (a buffer that filled meanwhile)
    task = unique("frame")
    for n in range(4):
        publisher.emit("broker", "enqueue", task, {"n": n, "pad": "x" * 120_000})

    # Then each goes in a frame the relay takes, and all 4 arrive
    assert publisher.flush(5)
    lengths, at = [], 0
    while at + 4 <= len(stream):
        lengths.append(int.from_bytes(stream[at : at + 4], "big"))
        at += 4 + lengths[-1]
    assert lengths and max(lengths) <= link.MAX_FRAME, lengths
    seen: list[dict[str, Any]] = []
    wait_for(
        lambda: len([e for e in decoded(tap, seen) if e["task"] == task]) == 4, 5, what="4 events"
    )
