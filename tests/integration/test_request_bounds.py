"""The web process `lifecycle up` starts (``python -m dashboard.serve``: daphne with bounds)
refuses a request body past its cap before reading it, and closes a client whose headers
trickle in or that sends nothing, while ordinary requests, kept-alive connections and
imports up to their own cap go through. Real sockets against a real process."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.web import web_process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 1.5  # LIFECYCLE_HEADER_TIMEOUT of the process under test


class Web:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process
        self.host = f"127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        return sock

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


def status_of(sock: socket.socket) -> int:
    """Read one whole response (by its Content-Length) and give its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split(b"\r\n", 1)[0].split()[1])


def _ready(sock: socket.socket) -> bool:
    """Something came from the server (or it closed): reading would not block."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def closed(sock: socket.socket) -> bool:
    """The server closed (or reset) the connection: reading gives nothing more."""
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def web(postgres: None, django_db_setup: None, django_db_blocker: Any) -> Iterator[Web]:
    with web_process(django_db_blocker, {"LIFECYCLE_HEADER_TIMEOUT": str(TIMEOUT)}) as started:
        yield Web(started.port, started.process)


def post_head(web: Web, path: str, length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: {web.host}\r\nContent-Type: application/json\r\n"
        f"{size}\r\n\r\n"
    ).encode()


def test_a_body_announced_past_the_cap_is_refused_before_a_byte_of_it_is_sent(web: Web) -> None:
    # Given an anonymous client that announces 1 GiB and sends nothing of it
    with web.connect() as sock:
        sock.sendall(post_head(web, "/api/events", 1 << 30))
        started = time.monotonic()
        # Then it is answered 413 at once, and the connection closed
        assert status_of(sock) == 413
        assert time.monotonic() - started < 5
        assert closed(sock)


def test_a_chunked_body_is_cut_off_once_it_passes_the_cap_and_nothing_of_it_is_kept(
    web: Web,
) -> None:
    before = web.rss_mb()
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with web.connect() as sock:
        sock.sendall(post_head(web, "/api/events", None))
        # When a client streams 200 MiB without a length
        try:
            while sent < 200 << 20:
                sock.sendall(frame)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # Then the server stopped it long before: a 413, the connection closed
        assert sent < 32 << 20, f"{sent} bytes taken"
        try:
            assert status_of(sock) == 413
        except ConnectionResetError:
            pass  # the reset can overtake the answer: the cut is what matters
    # And the process holds nothing of it
    assert web.rss_mb() - before < 40


def test_a_body_within_its_cap_goes_through_and_an_import_has_its_own(web: Web) -> None:
    # A 2 MB body to the events API is read (401: no token), not refused for its size
    body = b"[" + b" " * (2 << 20) + b"]"
    with web.connect() as sock:
        sock.sendall(post_head(web, "/api/events", len(body)) + body)
        assert status_of(sock) == 401
    # The same size past the events API's cap is refused; an import of 10 MB is not
    big = b"[" + b" " * (10 << 20) + b"]"
    with web.connect() as sock:
        sock.sendall(post_head(web, "/api/events", len(big)))
        assert status_of(sock) == 413
    with web.connect() as sock:
        sock.sendall(post_head(web, "/api/import", len(big)) + big)
        assert status_of(sock) in (401, 403)


def test_headers_that_trickle_in_are_answered_408_and_closed(web: Web) -> None:
    with web.connect() as sock:
        sock.sendall(f"GET /login HTTP/1.1\r\nHost: {web.host}\r\n".encode())
        started = time.monotonic()
        # When a client sends a header line every half second, never ending them
        while time.monotonic() - started < 15 and not _ready(sock):
            try:
                sock.sendall(b"X-Slow: yes\r\n")
            except OSError:
                break
            time.sleep(0.5)
        # Then it was answered 408 within the timeout (and a tick), and closed
        assert time.monotonic() - started < TIMEOUT + 4
        assert status_of(sock) == 408
        assert closed(sock)


def test_a_connection_that_sends_nothing_or_nothing_more_is_closed(web: Web) -> None:
    # A connection that never sends a request line
    with web.connect() as sock:
        started = time.monotonic()
        assert closed(sock)
        assert TIMEOUT - 0.5 < time.monotonic() - started < TIMEOUT + 4
    # A kept-alive connection: a request, the next one a second later, then silence
    with web.connect() as sock:
        for _ in range(2):
            sock.sendall(f"GET /login HTTP/1.1\r\nHost: {web.host}\r\n\r\n".encode())
            assert status_of(sock) == 200
            time.sleep(TIMEOUT * 0.6)
        started = time.monotonic()
        assert closed(sock)
        assert time.monotonic() - started < TIMEOUT + 4


def test_the_process_is_still_serving_after_all_that(web: Web) -> None:
    wait_for(lambda: web.process.poll() is None, 1)
    with web.connect() as sock:
        sock.sendall(f"GET /login HTTP/1.1\r\nHost: {web.host}\r\n\r\n".encode())
        assert status_of(sock) == 200
