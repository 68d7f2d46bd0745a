"""`make run`'s command: it says which service is down, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, start_stack, stop_stack

pytestmark = pytest.mark.acceptance


def up(env_overrides: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, **env_overrides}
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", "lifecycle", "up", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=30,
    )
    return result, time.monotonic() - began


def test_an_unreachable_rabbitmq_is_named_with_its_address_and_the_fix(postgres):
    port = free_port()
    result, elapsed = up({"AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/%2F"})
    assert result.returncode == 2
    assert f"RabbitMQ is not reachable at 127.0.0.1:{port}" in result.stderr
    assert "rabbitmq-server -detached" in result.stderr
    assert elapsed < 10


def test_an_unreachable_postgresql_is_named_with_its_address_and_the_fix(rabbitmq):
    port = free_port()
    result, elapsed = up({"DATABASE_URL": f"postgres://root@127.0.0.1:{port}/lifecycle"})
    assert result.returncode == 2
    assert f"PostgreSQL is not reachable at 127.0.0.1:{port}" in result.stderr
    assert "pg_ctlcluster --skip-systemctl-redirect" in result.stderr
    assert elapsed < 10


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_stops_every_process(postgres, rabbitmq, test_database):
    # Given the whole stack, started as `make run` starts it (in a namespace of its own: the
    # suite's stack may be running, and a second one in its namespace would be refused)
    stack = start_stack(free_port(), LIFECYCLE_NAMESPACE="lifecycle-test-up")
    processes = descendants(stack.process.pid)
    # web, the worker's supervisor process, its worker process, the ingestor
    assert len(processes) >= 3, stack.log()
    status, _ = stack.get("/login")  # the web process answers (this stack has no token)
    assert status == 200

    # When the user presses Ctrl-C
    stop_stack(stack)

    # Then nothing is left running
    assert stack.process.returncode == 0, stack.log()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in processes if alive(p)]


def test_a_taken_port_is_refused_before_any_process_starts(postgres, rabbitmq):
    # Given something listening on the port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When `lifecycle up` is asked to use it
        result, elapsed = up(
            {"PORT": str(port), "LIFECYCLE_NAMESPACE": "lifecycle-test-taken"}, "--no-migrate"
        )
    # Then it says so in one line, and started nothing
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port} on 127.0.0.1 is taken" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "started" not in result.stdout
    assert elapsed < 15


def test_a_second_stack_of_the_same_namespace_is_refused(stack):
    # Given the suite's stack running; when a second one starts beside it, on another port
    result, _ = up({**stack.env, "PORT": str(free_port())}, "--no-migrate")
    # Then it is refused before it starts a worker that would compete for the lab's queue
    assert result.returncode == 2, result.stdout + result.stderr
    namespace = stack.env["LIFECYCLE_NAMESPACE"]
    assert f"another `lifecycle up` is running with the namespace {namespace!r}" in result.stderr
    assert "started" not in result.stdout
