"""Attaching a foreign service exactly as the README says: not Django (a stdlib HTTP API), its
own Dramatiq broker and actor, its own database, the client installed on its own. Its
task's commits, broker steps, versioned reads and logged errors reach the timeline while
it runs, and its "flush without commit" bug is named ``stuck``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from tests.conftest import ROOT, Stack, free_port, http, wait_for

pytestmark = pytest.mark.acceptance

SERVICE = Path(__file__).resolve().parent / "foreign_service"


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """README, step 2: the client alone in the service's environment (no Django)."""
    where = tmp_path_factory.mktemp("foreign-venv")
    source = where / "client-source"
    shutil.copytree(
        ROOT / "lifecycle" / "client", source, ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    python = where / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{source}[dramatiq,psycopg]"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    found = subprocess.run([str(python), "-c", "import django"], capture_output=True)
    assert found.returncode != 0, "the client's environment must not have Django"
    return python


@pytest.fixture
def foreign_db(stack: Stack) -> Iterator[str]:
    """The service's own database, beside the inspector's on the same server."""
    from lifecycle.database import conninfo

    name = f"foreign_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(conninfo(dbname="postgres"), autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    url = conninfo(dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((SERVICE / "schema.sql").read_text())
    yield url
    with psycopg.connect(conninfo(dbname="postgres"), autocommit=True) as conn:
        conn.execute(
            pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
        )


@pytest.fixture
def service(stack: Stack, foreign_db: str, client_venv: Path) -> Iterator[str]:
    """README, steps 1 and 3: capture installed on its table, its worker and API started."""
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
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AMQP_URL": stack.env.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        "LIFECYCLE_NAMESPACE": stack.env["LIFECYCLE_NAMESPACE"],
        "JOBS_DATABASE_URL": foreign_db,
        "JOBS_QUEUE": f"foreign-{uuid.uuid4().hex[:8]}",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
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
        # A first job, through to the inspector: the follower has picked up the database
        # (it reads the watch list every few seconds) and every process is connected.
        _, first = http("POST", f"{base}/jobs", {"mode": "ok"})
        wait_for(
            lambda: (
                ("broker", "ack") in kinds(timeline(stack, first["id"]))
                and ("db", "insert") in kinds(timeline(stack, first["id"]))
            ),
            45,
            what="the service's first job on the inspector's timeline",
        )
        yield base
    finally:
        for process in (api, worker):
            process.terminate()
        for process in (api, worker):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.manage("lifecycle", "capture", "remove", "--all", "--database", foreign_db)


def timeline(stack: Stack, task: str) -> dict[str, Any]:
    status, body = stack.get(f"/api/tasks/{task}/timeline")
    return body if status == 200 else {"events": [], "findings": []}


def kinds(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["source"], e["kind"]) for e in body["events"]}


def test_a_foreign_service_is_attached_and_its_lost_commit_is_named_stuck(
    stack: Stack, service: str
) -> None:
    # Given a job whose worker writes COMPLETED and closes without committing it
    status, job = http("POST", f"{service}/jobs", {"mode": "flush_without_commit"})
    assert status == 201, job
    # When the end-to-end test polls it for a while
    for _ in range(10):
        status, read = http("GET", f"{service}/jobs/{job['id']}")
        assert status == 200
        time.sleep(0.2)
    assert read["state"] == "RUNNING"  # the bug: COMPLETED never committed
    # Then its whole history reaches the inspector's timeline while the service runs
    wanted = {
        ("db", "insert"),
        ("db", "update"),
        ("broker", "enqueue"),
        ("broker", "start"),
        ("broker", "ack"),
        ("api", "read"),
    }
    seen: dict[str, Any] = {}

    def arrived() -> Any:
        seen.update(timeline(stack, job["id"]))
        return wanted <= kinds(seen) and seen["findings"] and dict(seen)

    try:
        body = wait_for(arrived, 45, what="the foreign task's commits, steps, reads and finding")
    except AssertionError:
        raise AssertionError(
            f"on the timeline: {sorted(kinds(seen))}, findings {seen.get('findings')}; "
            f"missing {sorted(wanted - kinds(seen))}\n" + stack.log()[-3000:]
        ) from None
    commits = [e for e in body["events"] if e["source"] == "db"]
    assert [c["status"] for c in commits] == ["PENDING", "RUNNING"]
    assert [c["body"]["application_name"] for c in commits] == ["foreign-api", "foreign-worker"]
    assert all(isinstance(c["txid"], int) and c["body"]["database"] == "jobs-db" for c in commits)
    reads = [e for e in body["events"] if e["source"] == "api"]
    assert all(r["body"]["xmin"] == commits[-1]["txid"] % 2**32 for r in reads[-3:])
    assert [f["kind"] for f in body["findings"]] == ["stuck"]


def test_a_foreign_workers_swallowed_error_sits_next_to_its_commit(
    stack: Stack, service: str
) -> None:
    # Given a job whose LLM call fails, is logged at WARNING with its traceback, and swallowed
    status, job = http("POST", f"{service}/jobs", {"mode": "swallowed_error"})
    assert status == 201, job
    wait_for(lambda: http("GET", f"{service}/jobs/{job['id']}")[1]["state"] == "COMPLETED", 15)
    # Then the logged warning, with its traceback, is on the timeline before the commit
    body = wait_for(
        lambda: (
            (b := timeline(stack, job["id"]))
            and ("log", "warning") in kinds(b)
            and any(e["status"] == "COMPLETED" for e in b["events"] if e["source"] == "db")
            and b
        ),
        30,
        what="the logged warning and the COMPLETED commit",
    )
    (warning,) = [e for e in body["events"] if e["source"] == "log"]
    assert "LLM call failed" in warning["body"]["message"]
    assert "LLMError: the model timed out" in warning["body"]["exception"]
    completed = next(
        e for e in body["events"] if e["source"] == "db" and e["status"] == "COMPLETED"
    )
    assert warning["at"] < completed["at"]
    # And the checker names it with no expectation given: a WARNING with a traceback, then
    # a COMPLETED commit and an ack in the same attempt
    body = wait_for(
        lambda: (b := timeline(stack, job["id"])) and b["findings"] and b, 15, what="findings"
    )
    assert [f["kind"] for f in body["findings"]] == ["swallowed_error"]
    assert "LLM call failed" in body["findings"][0]["message"]
