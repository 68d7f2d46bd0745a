"""An outside attack on the web process's request bounds: a body that trickles in (slow
POST, "R.U.D.Y."), where the headers came at once.

Headers must come within ``LIFECYCLE_HEADER_TIMEOUT``, but a body had no bound in time:
a byte every 20 s (Twisted closes after 60 s of silence) holds a connection for ever,
and Twisted spools a body announced at 100,000 bytes or more to a temporary file, so each
such connection costs the process two descriptors. Three anonymous clients on one
address, 10,000 connections between them, took the web process to its 20,000 open
files: every new connection was refused at once (curl: 000 in 0.5 ms) until the clients
went away. Real sockets against a real process (``python -m dashboard.serve``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.web import web_process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 1.5  # LIFECYCLE_HEADER_TIMEOUT of the process under test
TRICKLE = 30.0  # seconds the attack goes on


@pytest.fixture(scope="module")
def port(postgres: None, django_db_setup: None, django_db_blocker: Any) -> Iterator[int]:
    with web_process(django_db_blocker, {"LIFECYCLE_HEADER_TIMEOUT": str(TIMEOUT)}) as started:
        yield started.port


def test_a_body_that_trickles_in_is_cut_off(port: int) -> None:
    # Given an anonymous client whose headers came at once, announcing a 100,000-byte body
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
    )
    # When it sends the body a byte a second, for 20 times the header timeout
    start, cut = time.monotonic(), None
    while time.monotonic() - start < TRICKLE:
        try:
            sock.sendall(b"a")
            sock.setblocking(False)
            try:
                if sock.recv(65536) is not None:  # an answer (408), or b"" for closed
                    cut = time.monotonic() - start
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        except OSError:
            cut = time.monotonic() - start
            break
        time.sleep(1)
    sock.close()

    # Then the server cut it off long before
    assert cut is not None, f"a body trickled for {TRICKLE:.0f} s is still being read"
