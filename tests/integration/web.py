"""A real web process on the test database, for the tests that talk to it over sockets as
a browser, a proxy or an attacker would (request bounds, TLS, logins, slow clients)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests import conftest
from tests.conftest import ROOT, free_port, wait_for


@dataclass
class WebProcess:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def answers(port: int, headers: str = "") -> bool:
    """Whether ``GET /login`` (with these raw header lines) is a 200 there."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
        return sock.recv(12) == b"HTTP/1.1 200"


@contextmanager
def web_process(
    django_db_blocker: Any,
    env: dict[str, str] | None = None,
    *,
    module: str = "dashboard.serve",
    probe_headers: str = "",
) -> Iterator[WebProcess]:
    """``python -m <module>`` (the web process ``lifecycle up`` runs, or plain ``daphne``)
    on a free port, with ``env`` over the test database's settings, until the block ends."""
    with django_db_blocker.unblock():
        database = conftest.test_database_url()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", module, "-b", "127.0.0.1", "-p", str(port)]
        + ["dashboard.asgi:application"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database,
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "PORT": str(port),
            **(env or {}),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            return answers(port, probe_headers)
        except OSError:
            return process.poll() is not None  # died: the assert below says so

    try:
        wait_for(up, 30, 0.2, f"python -m {module}")
        assert process.poll() is None, f"python -m {module} exited"
        yield WebProcess(port, process)
    finally:
        process.kill()
        process.wait(10)
