"""`make run`'s command: it says which service is down, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from lifecycle.scenarios.chaos import descendants
from tests import conftest
from tests.conftest import ROOT, free_port, lifecycle_status, start_stack, stop_stack, wait_for

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


@pytest.mark.parametrize(
    ("setting", "url", "name", "fix", "other_service"),
    [
        (
            "AMQP_URL",
            "amqp://guest:guest@127.0.0.1:{}/%2F",
            "RabbitMQ",
            "rabbitmq-server -detached",
            "postgres",
        ),
        (
            "DATABASE_URL",
            "postgres://root@127.0.0.1:{}/lifecycle",
            "PostgreSQL",
            "pg_ctlcluster --skip-systemctl-redirect",
            "rabbitmq",
        ),
    ],
    ids=["rabbitmq", "postgresql"],
)
def test_an_unreachable_service_is_named_with_its_address_and_the_fix(
    request: pytest.FixtureRequest, setting: str, url: str, name: str, fix: str, other_service: str
) -> None:
    request.getfixturevalue(other_service)  # the one that is up must really be up
    port = free_port()
    result, elapsed = up({setting: url.format(port)})
    assert result.returncode == 2
    assert f"{name} is not reachable at 127.0.0.1:{port}" in result.stderr
    assert fix in result.stderr
    assert elapsed < 10


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_stops_every_process(postgres, rabbitmq, test_database):
    # Given the whole stack, started as `make run` starts it (in a namespace of its own: the
    # suite's stack may be running, and its processes would count as this one's)
    stack = start_stack(free_port(), LIFECYCLE_NAMESPACE="lifecycle-test-up")
    processes = set(descendants(stack.process.pid))
    # web, the worker's supervisor process, its worker process, the ingestor
    assert len(processes) >= 3, stack.log()
    status, _ = stack.get("/login")  # the web process answers (this stack has no token)
    assert status == 200

    # When the user presses Ctrl-C
    stop_stack(stack)

    # Then nothing is left running
    assert stack.process.returncode == 0, stack.log()
    wait_for(
        lambda: not any(alive(p) for p in processes),
        5,
        what="every process to end",
        detail=lambda: [p for p in processes if alive(p)],
    )


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


def test_another_deployment_in_the_namespace_is_refused(postgres, rabbitmq, test_database):
    import pika
    from django.conf import settings

    from lifecycle.nodes import deployment

    # Given a namespace another deployment (another database) has marked as its own
    namespace = f"lifecycle-test-claim-{uuid.uuid4().hex[:8]}"
    other = {"deployment": str(uuid.uuid4()), "database": "dbname=elsewhere"}
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    channel.queue_declare(
        deployment.marker_queue(namespace), durable=True, arguments=deployment.MARKER_ARGUMENTS
    )
    channel.basic_publish("", deployment.marker_queue(namespace), json.dumps(other).encode())
    try:
        # When a node of this database starts in it
        result, _ = up(
            {"DATABASE_URL": conftest.test_database_url(), "LIFECYCLE_NAMESPACE": namespace},
            "--no-migrate",
            "--port",
            str(free_port()),
        )
        # Then it is refused in one line that names the other, before any process starts
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"the namespace {namespace!r} on RabbitMQ belongs to another deployment" in (
            result.stderr
        )
        assert other["deployment"] in result.stderr and "dbname=elsewhere" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "started" not in result.stdout
        # And its mark is left as it was
        method, _, body = channel.basic_get(deployment.marker_queue(namespace), auto_ack=True)
        assert method is not None and json.loads(body) == other
    finally:
        channel.queue_delete(deployment.marker_queue(namespace))
        connection.close()


def test_unknown_roles_are_refused(postgres, rabbitmq):
    result, _ = up({}, "--no-migrate", "--roles", "web,bogus")
    assert result.returncode == 2
    assert "unknown role 'bogus': --roles takes a comma-separated list of web, ingest" in (
        result.stderr
    )


def test_a_second_node_of_the_deployment_runs_beside_the_first_and_stands_by(stack):
    from lifecycle.nodes import election

    # Given the suite's stack (a node that holds follow and maintain)
    held = wait_for(lambda: election.holders(), 30, what="the stack's node to hold its roles")
    assert set(held) == {"follow", "maintain"}, held
    # When a second node of the same deployment starts with those two roles only
    second = subprocess.Popen(
        [sys.executable, "manage.py", "lifecycle", "up", "--no-migrate"]
        + ["--roles", "follow,maintain"],
        cwd=ROOT,
        env={**stack.env, "PORT": str(free_port()), "LIFECYCLE_NODE": "second-node"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []

    def pump() -> None:
        assert second.stdout
        lines.extend(second.stdout)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        # Then it runs, and the first node keeps both roles: the second stands by
        wait_for(
            lambda: "".join(lines).count("standing by on node second-node") == 2,
            60,
            what="both roles to stand by",
            detail=lambda: "".join(lines),
        )
        assert second.poll() is None
        assert election.holders() == held
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(30)
        reader.join(10)
    out = "".join(lines)
    assert second.returncode == 0, out
    assert "node second-node: follow, maintain" in out
    assert "follow: standing by on node second-node" in out, out
    assert "maintain: standing by on node second-node" in out, out
    assert "started web" not in out and "Dashboard:" not in out


def test_each_node_beats_and_status_shows_the_holder_and_the_standby(
    postgres, rabbitmq, test_database
):
    import psycopg

    from lifecycle.nodes import deployment
    from lifecycle.runtime.services import maintenance_conninfo

    # Given two nodes of one deployment with follow and maintain, in a namespace and a
    # database of their own (the suite's stack holds the test database's roles): the first
    # node makes and migrates it
    namespace = f"lifecycle-test-status-{uuid.uuid4().hex[:8]}"
    database = f"test_status_nodes_{uuid.uuid4().hex[:8]}"
    env = {
        **conftest.stack_env(free_port()),
        "LIFECYCLE_NAMESPACE": namespace,
        "DATABASE_URL": conftest.test_database_url().rsplit("/", 1)[0] + f"/{database}",
    }
    started: list[subprocess.Popen[str]] = []
    outputs: list[list[str]] = []

    def node(name: str) -> None:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "lifecycle", "up", "--roles", "follow,maintain"],
            cwd=ROOT,
            env={**env, "LIFECYCLE_NODE": name},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True).start()
        started.append(process)
        outputs.append(lines)

    def status() -> dict:
        return lifecycle_status(env)

    def listed(found: dict) -> dict[str, dict]:
        return {n["name"]: n for n in found["nodes"] if n["name"].startswith(namespace)}

    first, second = f"{namespace}-a", f"{namespace}-b"
    try:
        node(first)
        wait_for(
            lambda: "follow: node " in "".join(outputs[0]),
            90,
            what="the first node to hold follow",
            detail=lambda: "".join(outputs[0]),
        )
        node(second)
        # When both run, `lifecycle status` lists both with their roles, up, and the first
        # holding both singletons
        found = wait_for(
            lambda: (
                (s := status())
                and set(listed(s)) == {first, second}
                and s["singletons"] == {"follow": first, "maintain": first}
                and s
            ),
            60,
            interval=0.5,
            what="both nodes listed, the first holding both roles",
            detail=lambda: "".join(outputs[0] + outputs[1]),
        )
        for name in (first, second):
            assert listed(found)[name]["roles"] == ["follow", "maintain"]
            assert listed(found)[name]["state"] == "up" and not listed(found)[name]["gone"]
            assert listed(found)[name]["address"] is None  # no web role
        # And when both are stopped with Ctrl-C, each is listed as stopped at once
        for process in started:
            process.send_signal(signal.SIGINT)
            assert process.wait(30) == 0
        after = listed(status())
        assert {after[name]["state"] for name in (first, second)} == {"stopped"}
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
        deployment.forget_namespace(namespace)
        with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
