"""Shared fixtures: service checks (skip locally, fail in CI) and the live stack."""

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import venvs
from tests.published import Published
from tests.services import require_postgres, require_rabbitmq, skip_or_fail

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["skip_or_fail"]
pytest_plugins = ["tests.foreign", "tests.foreign_async", "tests.foreign_django", "tests.standby"]


# Session fixtures that modules of different folders share (an attached service, slow to
# start), each torn down after the last collected test that uses it, as a module fixture is
# after its module's: what runs after it does not run beside it.
ENDED_AFTER_LAST_USE = ("service", "foreign_db")
_ends_after: dict[str, list[Any]] = {}  # a test's node id: the fixtures its teardown ends


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last: dict[Any, str] = {}
    for item in items:
        for name in ENDED_AFTER_LAST_USE:
            # the definition this test gets (a module may have its own of the same name)
            found = getattr(item, "_fixtureinfo", None)
            defs = found.name2fixturedefs.get(name) if found else None
            if name in getattr(item, "fixturenames", ()) and defs and defs[-1].scope == "session":
                last[defs[-1]] = item.nodeid
    _ends_after.clear()
    for fixturedef, nodeid in last.items():  # in the order above: dependents first
        _ends_after.setdefault(nodeid, []).append(fixturedef)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        yield
    finally:
        for fixturedef in _ends_after.get(item.nodeid, ()):
            # pytest's own teardown of it (its value forgotten: a later user makes it anew)
            fixturedef.finish(item._request)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "environment(name): a test needs this environment of tests/venvs.py"
    )


@pytest.fixture(scope="session", autouse=True)
def _environments(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """The environments the collected tests need, begun in the background (tests/venvs.py)."""
    for name in venvs.needed(request.session.items):
        venvs.begin(name, tmp_path_factory)
    yield
    venvs.wait()


@pytest.fixture(scope="session", autouse=True)
def _quick_passwords() -> Iterator[None]:
    """Logins in this process hash quickly (tests/passwords.py)."""
    from django.conf import settings
    from django.test.utils import override_settings

    quick = "tests.passwords.QuickPBKDF2PasswordHasher"
    with override_settings(PASSWORD_HASHERS=[quick, *settings.PASSWORD_HASHERS]):
        yield


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Published:
    """What the client's read helpers report, kept instead of sent."""
    from lifecycle.client import reads

    sink = Published()
    monkeypatch.setattr(reads, "get_publisher", lambda: sink)
    return sink


@pytest.fixture(scope="session")
def postgres() -> None:
    require_postgres()


@pytest.fixture(scope="session")
def rabbitmq() -> None:
    require_rabbitmq()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@dataclass
class Stack:
    """`manage.py lifecycle up` running against the test database, on a free port."""

    process: subprocess.Popen[str]
    base_url: str
    env: dict[str, str]
    output: list[str] = field(default_factory=list)
    # A runner's token for the JSON API, and a runner's account for the browser.
    token: str = ""
    account: tuple[str, str] = ("", "")

    def get(self, path: str) -> tuple[int, Any]:
        return http("GET", self.base_url + path, token=self.token)

    def post(self, path: str, payload: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        return http("POST", self.base_url + path, payload, raw, token=self.token)

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=timeout,
        )

    def log(self) -> str:
        return "".join(self.output)


def http(
    method: str, url: str, payload: Any = None, raw: bytes | None = None, token: str = ""
) -> tuple[int, Any]:
    data = (
        raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    )
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body.decode(errors="replace")


# The foreign services' APIs listen here (tests/foreign*.py), and the stack's scenario files
# include their scenario files, which read the addresses from JOBS_API_URL, TASKS_API_URL
# and DJANGO_JOBS_API_URL.
FOREIGN_API_PORT = free_port()
ASYNC_API_PORT = free_port()
DJANGO_API_PORT = free_port()
SCENARIO_FILES = os.pathsep.join(
    [
        str(ROOT / "lifecycle" / "lab" / "scenarios.toml"),
        str(ROOT / "tests" / "acceptance" / "foreign_service" / "scenarios.toml"),
        str(ROOT / "tests" / "acceptance" / "async_service" / "scenarios.toml"),
        str(ROOT / "tests" / "acceptance" / "django_service" / "scenarios.toml"),
    ]
)


def stack_env(port: int) -> dict[str, str]:
    from tests.standby import standby_url  # a plugin of this conftest's (pytest_plugins)

    return {
        **{k: v for k, v in os.environ.items() if k != "LAB_BASE_URL"},
        "LIFECYCLE_SCENARIOS": SCENARIO_FILES,
        "JOBS_API_URL": f"http://127.0.0.1:{FOREIGN_API_PORT}",
        "TASKS_API_URL": f"http://127.0.0.1:{ASYNC_API_PORT}",
        "DJANGO_JOBS_API_URL": f"http://127.0.0.1:{DJANGO_API_PORT}",
        "DATABASE_URL": test_database_url(),
        "HOST": "127.0.0.1",
        "PORT": str(port),  # LAB_BASE_URL unset: the probe goes to http://127.0.0.1:PORT
        "LIFECYCLE_NAMESPACE": os.environ["LIFECYCLE_NAMESPACE"],
        # The lab's replica-read reads the standby's copy of the test database: the tests
        # that run it ask for the `standby` fixture (tests/standby.py), which starts one.
        "LAB_REPLICA_URL": standby_url(),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }


def start_stack(port: int, **overrides: str) -> Stack:
    from lifecycle.nodes import deployment

    env = {**stack_env(port), **overrides}
    # The test database is made anew each run: a new deployment in a namespace an earlier
    # run's may have marked (lifecycle/nodes/deployment.py)
    deployment.forget_namespace(env["LIFECYCLE_NAMESPACE"], env.get("AMQP_URL"))
    process = subprocess.Popen(
        [sys.executable, "manage.py", "lifecycle", "up", "--no-migrate"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stack = Stack(process, f"http://127.0.0.1:{port}", env)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout
        for line in process.stdout:
            stack.output.append(line)
            if "Dashboard:" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(60):
        process.kill()
        raise RuntimeError("lifecycle up did not start:\n" + stack.log())
    return stack


def lifecycle_status(env: dict[str, str]) -> dict[str, Any]:
    """``lifecycle status --json`` as a node's operator runs it (every part answered)."""
    done = subprocess.run(
        [sys.executable, "manage.py", "lifecycle", "status", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def stop_stack(stack: Stack) -> None:
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(20)
        except subprocess.TimeoutExpired:
            stack.process.kill()


def purge_namespace_queues() -> None:
    """Drop messages a previous, interrupted test run left in the test namespace."""
    import pika
    from django.conf import settings

    try:
        conn = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    except Exception:
        return
    try:
        # <ns>.deployment: the test database is made anew each run, with a new deployment
        # id, which a mark left by an earlier run's would refuse (lifecycle/nodes/deployment.py)
        for name in (
            settings.LAB_QUEUE,
            f"{settings.LIFECYCLE_NAMESPACE}.ingest",
            f"{settings.LIFECYCLE_NAMESPACE}.deployment",
        ):
            channel = conn.channel()
            try:
                channel.queue_purge(name)
            except Exception:
                pass  # the queue does not exist yet
    finally:
        conn.close()


@pytest.fixture(scope="session")
def test_database(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any
) -> None:
    """The test database, made even when no collected test asks pytest-django for it:
    pytest-django makes it only for tests that use its ``db`` fixtures or marker, so a run
    of acceptance tests alone would start the stack on the development database."""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.settings_dict["NAME"] == connection.creation._get_test_db_name():
        return  # pytest-django made it
    with django_db_blocker.unblock():
        made = setup_databases(verbosity=0, interactive=False, aliases={"default"})

    def drop() -> None:
        with django_db_blocker.unblock():
            teardown_databases(made, verbosity=0)

    request.addfinalizer(drop)


@pytest.fixture(scope="session")
def stack(
    postgres: None, rabbitmq: None, test_database: None, django_db_blocker: Any
) -> Iterator[Stack]:
    purge_namespace_queues()
    stack = start_stack(free_port())
    try:
        made = stack.manage("lifecycle", "token", "create", "tests", "--role", "runner")
        assert made.returncode == 0, made.stderr
        stack.token = made.stdout.strip()
        made = stack.manage("lifecycle", "user", "add", "runner-tester", "--role", "runner")
        assert made.returncode == 0, made.stderr
        stack.account = ("runner-tester", made.stdout.strip())
        yield stack
    finally:
        stop_stack(stack)


@pytest.fixture
def live_db(django_db_blocker: Any) -> Iterator[None]:
    """ORM access to the test database that other processes write to (no rollback)."""
    with django_db_blocker.unblock():
        yield


def wait_for(
    predicate: Any,
    timeout: float = 15.0,
    interval: float = 0.1,
    what: str = "condition",
    detail: Any = None,
) -> Any:
    """``predicate()``'s first true value, asked every ``interval`` s; after ``timeout`` s,
    an AssertionError naming ``what`` (and ``detail()``, a log say, as it is then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            more = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{more}")
        time.sleep(interval)


@pytest.fixture
def client() -> Any:
    """Django's test client, logged in as a superuser: tests of the pages and the API see
    everything (tests of who may do what use ``anonymous_client``)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, made = get_user_model().objects.get_or_create(
        username="tester", defaults={"is_superuser": True, "is_staff": True}
    )
    logged_in = Client()
    logged_in.force_login(user)
    return logged_in


@pytest.fixture
def anonymous_client() -> Any:
    from django.test import Client

    return Client()
