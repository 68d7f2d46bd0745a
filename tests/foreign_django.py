"""The Django jobs service (``tests/acceptance/django_service/``), written the way a Django
team writes one: Django 5.2, django_dramatiq over RabbitMQ, its own PostgreSQL database
built by its migrations, ``ATOMIC_REQUESTS``, nested atomic helpers, ``on_commit``, a
cached view, served by gunicorn. Attached exactly as the README's Django section says, as
fixtures: its own environment (its requirements and the client), its database migrated to
0001 (the migration test runs the rest while it serves), capture installed with its key
prefix, its worker (``rundramatiq``) and API started."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import venvs
from tests.conftest import DJANGO_API_PORT, ROOT, Stack, http
from tests.foreign import first_created, first_on_timeline, service_database, service_env, stop

DJANGO_SERVICE = ROOT / "tests" / "acceptance" / "django_service"
KEY_PREFIX = "django-jobs:"  # its settings' LIFECYCLE_KEY_PREFIX


@pytest.fixture(scope="session")
def django_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """README, step 3: the client in the application's environment (with the pytest extra
    for the plugin, step 6), beside its own requirements (Django, django_dramatiq, gunicorn,
    psycopg; pytest and pytest-django for its tests)."""
    return venvs.made("django_venv", tmp_path_factory)


@venvs.maker("django_venv")
def make_django_venv(where: Path) -> Path:
    return venvs.with_client(
        where,
        lambda client: [
            "-r",
            str(DJANGO_SERVICE / "requirements-dev.txt"),
            f"{client}[dramatiq,psycopg,pytest]",
        ],
    )


def django_env(stack: Stack, database: str, role: str, queue: str) -> dict[str, str]:
    """What each of the service's processes gets: its database, and the dashboard's RabbitMQ
    and namespace (README, step 2, which step 3 refers to)."""
    return service_env(
        stack, LIFECYCLE_PROCESS_ROLE=role, JOBS_DATABASE_URL=database, JOBS_QUEUE=queue
    )


class DjangoService:
    """The running service: its API's address, and ``manage.py`` in its environment."""

    def __init__(
        self, python: Path, env: dict[str, str], base_url: str, database: str, logs: Path
    ) -> None:
        self.python = python
        self.env = env
        self.base_url = base_url
        self.database = database
        self.logs = logs  # worker.log and api.log

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), "manage.py", *args],
            cwd=DJANGO_SERVICE,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def submit(self, payload: dict[str, Any], path: str = "/jobs") -> dict[str, Any]:
        status, job = http("POST", f"{self.base_url}{path}", payload)
        assert status == 201, (status, job)
        return job


@pytest.fixture(scope="module")
def django_db(stack: Stack) -> Iterator[str]:
    """The service's own database, empty: its migrations build it."""
    from django.db import connection

    settings = connection.settings_dict
    auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    where = f"{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}"
    with service_database("djangojobs", None) as name:
        yield f"postgres://{auth}@{where}/{name}"


@pytest.fixture(scope="module")
def django_service(
    stack: Stack, django_db: str, django_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DjangoService]:
    """README, steps 1 and 3: migrated to 0001, capture installed on ``jobs_job`` with the
    key prefix its settings name, its worker and API started (their output in files, so a
    chatty process never blocks on a full pipe)."""
    logs = tmp_path_factory.mktemp("django-service")
    queue = f"django-jobs-{uuid.uuid4().hex[:8]}"
    api_env = django_env(stack, django_db, "api", queue)
    service = DjangoService(
        django_venv, api_env, f"http://127.0.0.1:{DJANGO_API_PORT}", django_db, logs
    )
    for args in (("migrate", "jobs", "0001"), ("migrate",)):
        done = service.manage(*args, "--no-input")
        assert done.returncode == 0, done.stdout + done.stderr
    done = stack.manage(
        "lifecycle",
        "capture",
        "install",
        "public.jobs_job",
        "--key",
        "id",
        "--status",
        "status",
        "--key-prefix",
        KEY_PREFIX,
        "--database",
        django_db,
        "--name",
        "django-jobs-db",
    )
    assert done.returncode == 0, done.stderr
    worker = subprocess.Popen(
        [
            str(django_venv),
            "manage.py",
            "rundramatiq",
            "--processes",
            "1",
            "--threads",
            "4",
            "--worker-shutdown-timeout",
            "5000",
        ],
        cwd=DJANGO_SERVICE,
        env=django_env(stack, django_db, "worker", queue),
        stdout=subprocess.DEVNULL,
        stderr=(logs / "worker.log").open("w"),
        text=True,
    )
    api = subprocess.Popen(
        [
            str(django_venv),
            "-m",
            "gunicorn",
            "jobsite.wsgi",
            "--bind",
            f"127.0.0.1:{DJANGO_API_PORT}",
            "--workers",
            "1",
            "--threads",
            "8",
            "--log-level",
            "warning",
        ],
        cwd=DJANGO_SERVICE,
        env=api_env,
        stdout=subprocess.DEVNULL,
        stderr=(logs / "api.log").open("w"),
        text=True,
    )
    try:

        def exited() -> None:
            for process, name in ((api, "api"), (worker, "worker")):
                if process.poll() is not None:
                    log = (logs / f"{name}.log").read_text()
                    raise AssertionError(f"the service's {name} exited:\n{log}")

        first = first_created(f"{service.base_url}/jobs", exited, "the jobs API")
        first_on_timeline(stack, f"{KEY_PREFIX}{first['id']}", ("db", "update"))
        yield service
    finally:
        stop(api, worker)
        stack.manage("lifecycle", "capture", "remove", "--all", "--database", django_db)
