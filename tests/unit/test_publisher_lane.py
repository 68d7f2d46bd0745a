"""The lane: the Dramatiq middleware's start and ack are appended without the publisher's
lock (``Publisher._note``) and given their tickets later, in order, before anything that
comes after them; the buffer's bound, the counts and ``close`` see them as buffered events.
No thread, no broker: the publisher's own bookkeeping."""

from __future__ import annotations

import time
from typing import Any

import pytest

from lifecycle.client.messages import BROKER_MARK
from lifecycle.client.publisher import Publisher

pytestmark = pytest.mark.unit


class Sleeping(Publisher):
    """A publisher whose thread never runs: what the callers leave stays buffered."""

    def __init__(self, max_events: int = 100) -> None:
        super().__init__(url="amqp://guest:guest@127.0.0.1:1/%2F", max_events=max_events)
        self.starts = 0

    def _start_thread(self) -> None:
        self.starts += 1
        self._running = True


def parts(task: str, kind: str) -> tuple[Any, ...]:
    fields = (BROKER_MARK, "m-1", "work", "default", 1, 1, "Thread-1", None)
    return ("broker", kind, task, None, time.time(), None, fields)


def buffered(publisher: Publisher) -> list[tuple[int, str, str]]:
    with publisher._lock:
        publisher._absorb()
        return [(ticket, message[2], message[1]) for ticket, message in publisher._buffer]


def test_noted_events_get_their_tickets_before_a_later_emit_in_the_order_they_came() -> None:
    publisher = Sleeping()
    publisher._note(parts("t-1", "start"))  # starts the thread: it was idle
    publisher._note(parts("t-1", "ack"))
    ticket = publisher.emit("broker", "enqueue", "t-2", {})
    publisher._note(parts("t-2", "start"))
    assert ticket == 3
    assert buffered(publisher) == [
        (1, "t-1", "start"),
        (2, "t-1", "ack"),
        (3, "t-2", "enqueue"),
        (4, "t-2", "start"),
    ]
    assert publisher.emit("broker", "enqueue", "t-3", {}) == 5  # tickets go on after them


def test_the_buffers_bound_holds_for_noted_events_and_what_it_drops_is_a_gap() -> None:
    # Given a buffer of 3 events
    publisher = Sleeping(max_events=3)
    # When 5 are noted
    for n in range(5):
        publisher._note(parts(f"t-{n}", "start"))
    # Then 3 are held, 2 dropped, each counted against its task for its gap event
    assert [task for _, task, _ in buffered(publisher)] == ["t-0", "t-1", "t-2"]
    stats = publisher.stats()
    assert (stats.queued, stats.dropped) == (3, 2)
    assert sorted(task for task, _ in publisher._gaps) == ["t-3", "t-4"]
    assert all(
        gap.count == 1 and "buffer was full" in gap.reason() for gap in publisher._gaps.values()
    )


def test_a_note_wakes_the_thread_only_while_it_sleeps_or_once_a_message_is_full() -> None:
    publisher = Sleeping(max_events=10_000)
    woken: list[int] = []
    publisher._wake = lambda callback=None: woken.append(len(publisher._lane))  # type: ignore[method-assign]
    publisher._note(parts("t", "start"))  # not running: started, nothing left in the lane
    assert (publisher.starts, publisher._idle, len(publisher._lane)) == (1, False, 0)
    for _ in range(499):
        publisher._note(parts("t", "ack"))
    assert woken == [] and len(publisher._lane) == 499  # awake: an append each, no more
    publisher._note(parts("t", "ack"))  # a whole message waits: moved, the thread woken
    assert len(publisher._lane) == 0 and publisher.stats().queued == 501 and woken == [0]
    for _ in range(500):
        publisher._note(parts("t", "ack"))  # into a buffer past a whole message already
    assert woken == [0] and publisher.stats().queued == 1001
    publisher._idle = True  # the thread went to sleep
    publisher._note(parts("t", "ack"))
    assert woken == [0, 0] and publisher._idle is False


def test_an_emit_that_moves_a_whole_message_out_of_the_lane_wakes_the_thread() -> None:
    publisher = Sleeping(max_events=10_000)
    publisher._running, publisher._idle = True, False  # an awake thread
    woken: list[int] = []
    publisher._wake = lambda callback=None: woken.append(1)  # type: ignore[method-assign]
    for _ in range(450):
        publisher._note(parts("t", "start"))
    publisher.emit("broker", "enqueue", "t", {})
    assert woken == []  # 451 buffered: not yet a whole message
    for _ in range(60):
        publisher._note(parts("t", "start"))
    publisher.emit("broker", "enqueue", "t", {})  # 512 now: past 500 at once
    assert woken == [1]


def test_events_the_lane_drops_are_logged_once_the_lock_is_let_go(caplog) -> None:
    # Given a full buffer, and a log handler that takes the publisher's lock from another
    # thread (as a handler that publishes a record would): logging under the lock would
    # hang it
    import logging
    import threading

    publisher = Sleeping(max_events=2)
    publisher._running, publisher._idle = True, False
    held: list[bool] = []

    def take() -> None:
        got = publisher._lock.acquire(timeout=1)
        held.append(got)
        if got:
            publisher._lock.release()

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got = threading.Thread(target=take)
            got.start()
            got.join()

    probe = Probe()
    logging.getLogger("lifecycle.client.publisher").addHandler(probe)
    try:
        for n in range(5):
            publisher._note(parts(f"t-{n}", "start"))
        assert publisher.flush(0) is False  # moves the lane: 2 kept, 3 dropped
    finally:
        logging.getLogger("lifecycle.client.publisher").removeHandler(probe)
    assert publisher.stats().dropped == 3
    assert held == [True]  # logged once, and the lock was free while it was


def test_noted_events_count_as_queued_and_keep_close_from_saying_all_was_sent() -> None:
    publisher = Sleeping()
    publisher._running, publisher._idle = True, False  # an awake thread: nothing is moved
    publisher._note(parts("t", "start"))
    assert len(publisher._lane) == 1
    assert publisher.stats().queued == 1
    publisher._running = False
    assert publisher.close(0.1) is False  # no thread, one event not sent


def test_a_forked_child_starts_with_an_empty_lane() -> None:
    import os

    publisher = Sleeping()
    publisher._running, publisher._idle = True, False
    publisher._note(parts("t", "start"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, str(len(publisher._lane)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert child == "0" and len(publisher._lane) == 1
