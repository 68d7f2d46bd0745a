"""The async foreign service (``tests/acceptance/async_service/``), built like the seed's:
FastAPI served by uvicorn, SQLAlchemy async over asyncpg, ``async def`` Dramatiq actors on
the AsyncIO middleware, its own database. Attached exactly as the README says, as fixtures
(the client's environment is ``client_venv``'s, shared with the sync service)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ASYNC_API_PORT, ROOT, Stack
from tests.foreign import first_created, first_on_timeline, service_database, service_env, stop

ASYNC_SERVICE = ROOT / "tests" / "acceptance" / "async_service"


@pytest.fixture(scope="module")
def async_db(stack: Stack) -> Iterator[tuple[str, str]]:
    """The service's own database: (a libpq URL for capture, its SQLAlchemy URL)."""
    from django.db import connection

    settings = connection.settings_dict
    auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    with service_database("tasks", ASYNC_SERVICE / "schema.sql") as name:
        where = f"{auth}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{name}"
        yield f"postgresql://{where}", f"postgresql+asyncpg://{where}"


def async_env(stack: Stack, database: str, role: str) -> dict[str, str]:
    """README, step 2: the service's processes get the dashboard's RabbitMQ and namespace."""
    return service_env(stack, LIFECYCLE_PROCESS_ROLE=role, TASKS_DATABASE_URL=database)


@pytest.fixture(scope="module")
def async_service(stack: Stack, async_db: tuple[str, str], client_venv: Path) -> Iterator[str]:
    """README, steps 1 and 3: capture installed on its table, its worker and API started."""
    capture_url, database = async_db
    done = stack.manage(
        "lifecycle",
        "capture",
        "install",
        "public.tasks",
        "--key",
        "id",
        "--status",
        "status",
        "--database",
        capture_url,
        "--name",
        "tasks-db",
    )
    assert done.returncode == 0, done.stderr
    queue = f"tasks-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [str(client_venv), "-m", "dramatiq", "worker", "--processes", "1", "--threads", "4"],
        cwd=ASYNC_SERVICE,
        env={**async_env(stack, database, "worker"), "TASKS_QUEUE": queue},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    api = subprocess.Popen(
        [
            str(client_venv),
            "-m",
            "uvicorn",
            "app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(ASYNC_API_PORT),
            "--log-level",
            "warning",
        ],
        cwd=ASYNC_SERVICE,
        env={**async_env(stack, database, "api"), "TASKS_QUEUE": queue},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{ASYNC_API_PORT}"

        def exited() -> None:
            if api.poll() is not None:
                raise AssertionError(f"the API exited: {api.stderr.read() if api.stderr else ''}")

        first = first_created(f"{base}/tasks", exited, "the tasks API")
        first_on_timeline(stack, first["id"], ("db", "update"))
        yield base
    finally:
        stop(api, worker)
        stack.manage("lifecycle", "capture", "remove", "--all", "--database", capture_url)
