"""The foreign service (``tests/acceptance/foreign_service/``), attached exactly as the README
says, as fixtures: the client alone in its own venv, its own database with capture
installed, its API and Dramatiq worker running. The session's stack reads its scenario file
(``JOBS_API_URL`` names the port its API listens on)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from tests import venvs
from tests.conftest import FOREIGN_API_PORT, ROOT, Stack, http, wait_for

SERVICE = ROOT / "tests" / "acceptance" / "foreign_service"
SCENARIOS = SERVICE / "scenarios.toml"
ASYNC_SERVICE_REQUIREMENTS = ["fastapi>=0.110", "uvicorn>=0.29", "asyncpg>=0.29"]


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """README, step 2: the client alone in the services' environment (no Django), with the
    pytest extra for the plugin; the async service's FastAPI, uvicorn and asyncpg beside."""
    return venvs.made("client_venv", tmp_path_factory)


@venvs.maker("client_venv")
def make_client_venv(where: Path) -> Path:
    python = venvs.with_client(
        where,
        lambda client: [
            f"{client}[dramatiq,psycopg,sqlalchemy,pytest]",
            # The async service's own requirements (tests/foreign_async.py)
            *ASYNC_SERVICE_REQUIREMENTS,
        ],
    )
    found = subprocess.run([str(python), "-c", "import django"], capture_output=True)
    assert found.returncode != 0, "the client's environment must not have Django"
    return python


@pytest.fixture(scope="session")
def foreign_db(stack: Stack) -> Iterator[str]:
    """The service's own database, beside the inspector's on the same server (once for the
    modules that attach the service, until the last of them: tests/conftest.py)."""
    from lifecycle.runtime.database import conninfo

    with service_database("foreign", SERVICE / "schema.sql") as name:
        yield conninfo(dbname=name)


@contextlib.contextmanager
def service_database(prefix: str, schema: Path | None) -> Iterator[str]:
    """A database of an attached service's own, with its schema (none: its migrations make
    it); its name. Dropped after, with the role that owned its capture functions (it
    outlives the database)."""
    from lifecycle.runtime.database import conninfo

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(conninfo(dbname="postgres"), autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    if schema is not None:
        with psycopg.connect(conninfo(dbname=name), autocommit=True) as conn:
            conn.execute(schema.read_text())
    try:
        yield name
    finally:
        with psycopg.connect(conninfo(dbname="postgres"), autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )
            conn.execute(
                pgsql.SQL("DROP ROLE IF EXISTS {}").format(
                    pgsql.Identifier(f"{name}_lifecycle_capture"[:63])
                )
            )


@pytest.fixture(scope="session")
def service(stack: Stack, foreign_db: str, client_venv: Path) -> Iterator[str]:
    """README, steps 1 and 3: capture installed on its table, its worker and API started."""
    from django.conf import settings

    done = stack.manage(
        "lifecycle",
        "capture",
        "install",
        "public.jobs",
        "--key",
        "id",
        "--status",
        "state",
        "--database",
        foreign_db,
        "--name",
        "jobs-db",
    )
    assert done.returncode == 0, done.stderr
    port = FOREIGN_API_PORT
    env = service_env(
        stack,
        JOBS_DATABASE_URL=foreign_db,
        JOBS_QUEUE=f"foreign-{uuid.uuid4().hex[:8]}",
        # Where its replica path reads: the standby the `standby` fixture makes or reuses
        # (tests that poll that path ask for it).
        JOBS_REPLICA_PORT=str(settings.LIFECYCLE_STANDBY_PORT),
        PORT=str(port),
    )
    worker = subprocess.Popen(
        [
            str(client_venv),
            "-m",
            "dramatiq",
            "worker",
            "--processes",
            "1",
            "--threads",
            "2",
            "--queues",
            env["JOBS_QUEUE"],
        ],
        cwd=SERVICE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    api = subprocess.Popen(
        [str(client_venv), "api.py"], cwd=SERVICE, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert api.stdout is not None and "listening" in api.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        _, first = http("POST", f"{base}/jobs", {"mode": "ok"})
        first_on_timeline(stack, first["id"], ("db", "insert"))
        yield base
    finally:
        stop(api, worker)
        stack.manage("lifecycle", "capture", "remove", "--all", "--database", foreign_db)


def service_env(stack: Stack, **own: str) -> dict[str, str]:
    """README, step 2: what each process of an attached service gets: the dashboard's
    RabbitMQ and namespace, beside its ``own`` settings."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AMQP_URL": stack.env.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        "LIFECYCLE_NAMESPACE": stack.env["LIFECYCLE_NAMESPACE"],
        **own,
        "PYTHONUNBUFFERED": "1",
    }


def first_created(url: str, exited: Callable[[], None], what: str) -> dict[str, Any]:
    """The first task a service's API creates (``POST url``, mode ok), once it answers 201;
    ``exited`` raises, saying what it knows, as soon as a process of the service has ended."""

    def created() -> dict[str, Any] | None:
        exited()
        try:
            status, body = http("POST", url, {"mode": "ok"})
        except OSError:
            return None
        return body if status == 201 else None

    return wait_for(created, 30, interval=0.2, what=what)


def first_on_timeline(stack: Stack, task: str, commit: tuple[str, str]) -> None:
    """Wait for a service's first task on the inspector's timeline, acked and committed:
    the follower has picked up its database (it reads the watch list every few seconds)
    and every process of the service is connected."""
    wait_for(
        lambda: (
            ("broker", "ack") in kinds(timeline(stack, task))
            and commit in kinds(timeline(stack, task))
        ),
        45,
        what=f"the service's first task ({task}) on the inspector's timeline",
    )


def stop(*processes: subprocess.Popen[str]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def service_pytest(
    client_venv: Path, where: Path, test_file: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """A service's own test suite, run in its own environment (where the client is)."""
    return subprocess.run(
        [str(client_venv), "-m", "pytest", test_file, *args],
        cwd=where,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def failing_report(
    stack: Stack, done: subprocess.CompletedProcess[str], key: str
) -> tuple[str, str, str]:
    """A service's own pytest run, failed as its seeded bug makes it, and the plugin's report
    of it: the whole output, the plugin's section, and the task its permalink names (a key
    matching the pattern ``key``). The section names the swallowed error, and the runner's
    token is never shown."""
    out = done.stdout + done.stderr
    print(out)
    assert done.returncode == 1, out
    section = out[out.index("lifecycle") :]
    task = re.search(rf"task ({key}): ({re.escape(stack.base_url)}/tasks/\S+)", section)
    assert task, out
    assert "swallowed_error: Attempt 1 of message" in section, out
    assert stack.token not in out
    return out, section, task[1]


def timeline(stack: Stack, task: str) -> dict[str, Any]:
    status, body = stack.get(f"/api/tasks/{task}/timeline")
    return body if status == 200 else {"events": [], "findings": []}


def told(stack: Stack, run_id: int, fields: tuple[str, ...]) -> str:
    """A run's history, one line an event with the ``fields`` of its body it has, for a
    failing assertion's message."""
    run = stack.get(f"/api/runs/{run_id}")[1]
    lines = [f"run {run_id}: {run.get('verdict')} findings={run.get('findings')}"]
    for e in timeline(stack, run.get("task") or "")["events"]:
        body = {k: e["body"].get(k) for k in fields}
        lines.append(
            f"  #{e['id']} {e['at']} {e['source']} {e['kind']} {e['status']} txid={e['txid']} "
            f"{ {k: v for k, v in body.items() if v is not None} } -> {e.get('version_of')}"
        )
    return "\n".join(lines)


def kinds(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["source"], e["kind"]) for e in body["events"]}
