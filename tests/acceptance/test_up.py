"""`make run`'s command: it says which service is down, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, start_stack, stop_stack

pytestmark = pytest.mark.acceptance


def up(env_overrides: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, **env_overrides}
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", "lifecycle", "up"],
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


def test_ctrl_c_stops_every_process(postgres, rabbitmq, django_db_setup):
    # Given the whole stack, started as `make run` starts it
    stack = start_stack(free_port())
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
