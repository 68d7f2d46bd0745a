"""An outside attack on the streamed OTLP export: a reader that does not read.

The export of a long history is made 500 events at a time, "in a few MB of memory
whatever the length", and a web process serves ``LIFECYCLE_EXPORTS`` (4) at a time. But
daphne takes every chunk the application sends and Twisted keeps what the socket cannot
take yet: a client that asks and then does not read has the whole document (72 MB for
100,000 events) kept for it in the web process, and the export's place is free again as
soon as the document is made. One viewer with four such sockets grew the process by
290 MB; with 24 of them over two minutes it stood at 1.2 GB, and kept it after they went
away. Now an export waits while more than 2 MB of it is held unsent for its client
(``dashboard.replies``), and ends after 60 s of nothing read. Real sockets against a real
process (``python -m dashboard.serve``)."""

from __future__ import annotations

import http.client
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from lifecycle.models import Event
from lifecycle.people import tokens
from tests.integration.web import web_process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EVENTS = 20_000  # a heavy export (more than 2,000 events): about 30 MB of OTLP
READERS = 4  # LIFECYCLE_EXPORTS: all of them at once, never refused


@pytest.fixture(scope="module")
def web(postgres: None, django_db_setup: None, django_db_blocker: Any) -> Iterator[tuple[int, int]]:
    with web_process(django_db_blocker) as started:
        yield started.port, started.process.pid


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def has_data(sock: socket.socket) -> bool:
    """Whether the reader has been sent something it has not read (its export began)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


def long_history(task: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    Event.objects.bulk_create(
        [
            Event(
                task_key=task,
                source="api",
                kind="read",
                status="RUNNING",
                at=start + timedelta(milliseconds=i),
                body={"i": i, "pad": "x" * 1000},
            )
            for i in range(EVENTS)
        ],
        batch_size=2000,
    )


def test_readers_that_do_not_read_cost_the_process_a_few_mb_each(web: tuple[int, int]) -> None:
    port, pid = web
    task = f"slow-reader-{uuid.uuid4().hex[:8]}"
    long_history(task)
    _, token = tokens.create(f"slow-{uuid.uuid4().hex[:6]}", "viewer")
    path = f"/api/tasks/{quote(task, safe='')}/otlp"
    headers = {"Authorization": f"Bearer {token}"}

    # The export read whole, twice: the process as it is once it has made some
    for _ in range(2):
        began = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        size = len(response.read())
        conn.close()
        whole = time.monotonic() - began  # one export made and read, start to end
    assert size > 20 * 1024 * 1024
    time.sleep(1)
    before = rss_mb(pid)

    # When four readers ask for it and then read nothing
    readers = []
    for _ in range(READERS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        readers.append(sock)
    try:
        # As long as the process would take to make all four documents at once and then
        # some (it held them whole before), and never more than the export's stall limit;
        # or until each reader has been sent the start of its export and the process has
        # then stayed the same size for three seconds: every export waits on its reader (a
        # process that makes the documents grows by megabytes a second, whole as it was)
        watch = min(60.0, READERS * whole * 1.5 + 5)
        peak, deadline, sizes = before, time.monotonic() + watch, [before]
        while time.monotonic() < deadline and peak - before <= 100:
            time.sleep(1)
            sizes.append(rss_mb(pid))
            peak = max(peak, sizes[-1])
            if not all(map(has_data, readers)):
                sizes = sizes[-1:]  # the same size before an export began says nothing
            elif len(sizes) > 3 and max(sizes[-4:]) - min(sizes[-4:]) < 1:
                break

        # Then the process holds a few MB for each, not each one's whole document
        assert peak - before < 60, f"the web process grew by {peak - before:.0f} MB"
    finally:
        for sock in readers:
            sock.close()
