"""Two nodes of one deployment (README: Several nodes): two `lifecycle up` on two ports,
one database of their own, one namespace. Both serve; one holds follow and maintain; a
`kill -9` of every process of that node leaves the other to finish the run, copy the
captured commits and keep the findings; the killed node started again takes nothing back."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from django.conf import settings

from lifecycle.nodes import deployment, election, heartbeat
from lifecycle.runtime.database import conninfo
from lifecycle.runtime.services import maintenance_conninfo
from lifecycle.scenarios.chaos import descendants, up_process
from lifecycle.scenarios.faults import TcpProxy
from tests import conftest
from tests.conftest import ROOT, free_port, lifecycle_status, stack_env, wait_for

pytestmark = pytest.mark.acceptance

TAKEOVER = 10.0  # seconds within which the other node holds the roles


@dataclass
class Node:
    name: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str) -> None:
        self.output = []
        self.process = up_process(self.env, *args)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            self.output.append(line)

    def ready(self, timeout: float = 90) -> None:
        wait_for(
            lambda: "Dashboard:" in self.log(),
            timeout,
            what=f"{self.name} to start",
            detail=lambda: self.log()[-4000:],
        )

    def log(self) -> str:
        return "".join(self.output)

    def kill_everything(self) -> None:
        """kill -9 of the node: the supervisor and every process below it at once."""
        assert self.process
        pids = [self.process.pid, *descendants(self.process.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_everything()


def _http(method: str, url: str, token: str = "", body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        text, status = exc.read(), exc.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode(errors="replace")


def _websocket_opens(port: int) -> bool:
    """A handshake to the home page's feed (reading is open on these nodes): 101."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                f"GET /ws/feed HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n"
            ).encode()
        )
        return sock.recv(12) == b"HTTP/1.1 101"


@pytest.fixture
def stage(postgres, rabbitmq, test_database):
    """A database and an application database of their own, and a namespace."""
    hexa = uuid.uuid4().hex[:8]
    base = settings.DATABASES["default"]["NAME"]
    database, app = f"{base}_nodes_{hexa}"[:63], f"{base}_nodes_app_{hexa}"[:63]
    namespace = f"{settings.LIFECYCLE_NAMESPACE}-nodes-{hexa}"
    with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
        conn.execute(f'CREATE DATABASE "{app}"')
    with psycopg.connect(conninfo(dbname=app), autocommit=True) as conn:
        conn.execute("CREATE TABLE jobs (id text PRIMARY KEY, state text NOT NULL)")
    yield {"database": database, "app": app, "namespace": namespace}
    try:
        deployment.forget_namespace(namespace)
        _delete_queues(namespace)
    finally:
        with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
            for name in (database, app):
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    [name],
                )
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _delete_queues(namespace: str) -> None:
    import pika

    from lifecycle.client import config, topology

    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    try:
        for queue in (
            topology.ingest_queue(namespace),
            topology.dead_queue(namespace),
            f"{namespace}.lab",
            f"{namespace}.lab.DQ",
            f"{namespace}.lab.XQ",
        ):
            channel = connection.channel()
            try:
                channel.queue_delete(queue)
            except Exception:
                pass
        connection.channel().exchange_delete(config.exchange_name(namespace))
    finally:
        connection.close()


def _node(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(node for node in status["nodes"] if node["name"] == name)


def test_two_nodes_one_dies_the_other_carries_on(stage):
    database_url = conftest.test_database_url().rsplit("/", 1)[0] + f"/{stage['database']}"
    store = conninfo(dbname=stage["database"])
    ports = {"node-a": free_port(), "node-b": free_port()}
    # The load balancer in front of the web nodes, where the probe sends the lab's requests
    # (LAB_BASE_URL): a run adopted by the other node must still reach the lab
    balancer = TcpProxy("127.0.0.1", ports["node-a"])

    def env(name: str) -> dict[str, str]:
        return {
            **stack_env(ports[name]),
            "DATABASE_URL": database_url,
            "LIFECYCLE_NAMESPACE": stage["namespace"],
            "LIFECYCLE_NODE": name,
            "LIFECYCLE_PUBLIC_READ": "on",
            "LAB_BASE_URL": f"http://127.0.0.1:{balancer.port}",
        }

    a, b = (Node(name, ports[name], env(name)) for name in ("node-a", "node-b"))
    try:
        # Given two nodes started together on a new database: one migrates, then the other
        a.start()
        b.start()
        a.ready()
        b.ready()
        assert "database migrated" in a.log() and "database migrated" in b.log()
        token = subprocess.run(
            [sys.executable, "manage.py", "lifecycle", "token", "create", "nodes"]
            + ["--role", "runner"],
            cwd=ROOT,
            env=a.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[0]
        install = subprocess.run(
            [sys.executable, "manage.py", "lifecycle", "capture", "install", "jobs"]
            + [
                "--key",
                "id",
                "--status",
                "state",
                "--database",
                conninfo(dbname=stage["app"]),
            ],
            cwd=ROOT,
            env=a.env,
            capture_output=True,
            text=True,
        )
        assert install.returncode == 0, install.stdout + install.stderr

        # Then both serve pages, the JSON API and websockets
        for node in (a, b):
            assert _http("GET", f"{node.url}/login")[0] == 200
            assert _http("GET", f"{node.url}/api/scenarios", token)[0] == 200
            assert _websocket_opens(node.port)
        # And exactly one node holds each elected role
        held = wait_for(
            lambda: len(h := election.holders(store)) == 2 and h, 30, what="both roles held"
        )
        # (the first up takes both, unless the other's standby asked first for one: under
        # load the two start together)
        holder = held["follow"].node
        first, second = (a, b) if holder == "node-a" else (b, a)
        balancer.target = ("127.0.0.1", second.port)  # as it would once the first is gone

        # When a run starts on the holder's node, and that whole node is killed mid-run
        status, run = _http("POST", f"{first.url}/api/scenarios/slow/runs", token, {})
        assert status == 201, run
        time.sleep(0.5)
        killed_at = time.monotonic()
        first.kill_everything()

        # Then the other node holds both roles within 10 s
        wait_for(
            lambda: (
                {r: h.node for r, h in election.holders(store).items()}
                == {"follow": second.name, "maintain": second.name}
            ),
            TAKEOVER,
            what=f"{second.name} to hold both roles",
            detail=lambda: f"{election.holders(store)}\n{second.log()[-3000:]}",
        )
        took = time.monotonic() - killed_at
        # and `lifecycle status` says so, the killed node not marked stopped
        shown = lifecycle_status(second.env)
        assert shown["singletons"] == {"follow": second.name, "maintain": second.name}, shown
        assert _node(shown, first.name)["state"] in ("up", "gone")
        # A commit in the watched database after the kill arrives through it
        job = f"job-{uuid.uuid4().hex[:8]}"
        with psycopg.connect(conninfo(dbname=stage["app"]), autocommit=True) as conn:
            conn.execute("INSERT INTO jobs VALUES (%s, 'queued')", [job])
            conn.execute("UPDATE jobs SET state = 'done' WHERE id = %s", [job])
        with psycopg.connect(store, autocommit=True) as conn:

            def copied() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM lifecycle_event WHERE task_key = %s AND source = 'db'",
                    [job],
                ).fetchone()
                return bool(row and row[0] == 2)

            wait_for(copied, 20, what="the commits after the kill to be copied")

            # And the run gets its true verdict, its findings stored by the maintainer there
            def finished() -> Any:
                found = _http("GET", f"{second.url}/api/runs/{run['id']}", token)[1]
                return found if found.get("state") != "running" else None

            done = wait_for(finished, 60, interval=0.5, what="the run's verdict")
            assert done and done["verdict"] == "pass", json.dumps(done, indent=1)[:3000]
            wait_for(
                lambda: (
                    conn.execute(
                        "SELECT verdict FROM lifecycle_task_check WHERE task_key = %s",
                        [done["task"]],
                    ).fetchone()
                    == ("pass",)
                ),
                20,
                what="the other node's maintainer to store the findings",
            )

        # The killed node, not seen since, is shown gone
        wait_for(
            lambda: _node(lifecycle_status(second.env), first.name)["state"] == "gone",
            heartbeat.GONE_AFTER + 2 * heartbeat.BEAT,
            interval=1,
            what=f"{first.name} shown gone",
            detail=lambda: lifecycle_status(second.env)["nodes"],
        )

        # When the killed node starts again, it takes nothing back
        first.start("--no-migrate")
        first.ready()
        wait_for(
            lambda: "standing by on node" in first.log(),
            30,
            what="the restarted node to stand by",
            detail=lambda: first.log()[-3000:],
        )
        time.sleep(election.RETRY * 3)
        assert {r: h.node for r, h in election.holders(store).items()} == {
            "follow": second.name,
            "maintain": second.name,
        }
        shown = lifecycle_status(first.env)
        assert shown["singletons"] == {"follow": second.name, "maintain": second.name}, shown
        assert _node(shown, first.name)["state"] == "up"
        print(f"roles taken over {took:.2f}s after kill -9")
    finally:
        for node in (a, b):
            node.stop()
        balancer.close()
