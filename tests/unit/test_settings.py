import os
import subprocess
import sys

import pytest

from dashboard.settings import database_from_url, lab_base_url
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_database_url_is_parsed_into_django_settings():
    db = database_from_url("postgres://ann:s%40cret@db.example:6543/tasks?sslmode=require")
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "tasks",
        "ann",
        "s@cret",
        "db.example",
        "6543",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}
    assert db["CONN_HEALTH_CHECKS"] is True


def test_a_non_postgres_url_is_refused():
    with pytest.raises(ValueError, match="must start with postgres://"):
        database_from_url("mysql://root@localhost/x")


def test_options_reach_libpq_as_text_and_a_repeated_one_is_refused():
    db = database_from_url("postgres://root@h/db?connect_timeout=5&keepalives=true")
    assert db["OPTIONS"] == {"connect_timeout": "5", "keepalives": "true"}
    with pytest.raises(ValueError, match="'sslmode' more than once"):
        database_from_url("postgres://root@h/db?sslmode=require&sslmode=disable")


def test_a_refused_url_never_shows_its_password():
    with pytest.raises(ValueError) as refused:
        database_from_url("mysql://root:hunter2@localhost/x")
    assert "hunter2" not in str(refused.value) and "***" in str(refused.value)


@pytest.mark.parametrize(
    "address",
    [
        "postgres://app:hunter2@db.example:5433/app?sslmode=require",
        "postgresql:///app?host=/tmp&password=hunter2",
        "host=db dbname=app user=app password=hunter2",
    ],
)
def test_a_database_address_is_shown_without_its_password(address):
    from lifecycle.runtime.database import display_name, redact

    shown = redact(address)
    assert "hunter2" not in shown and "***" in shown
    assert "hunter2" not in display_name(address)


def test_log_level_sets_the_console_not_what_is_captured() -> None:
    """LOG_LEVEL=ERROR keeps warnings off the console, yet the capture's handler gets them."""
    script = (
        "import logging, logging.config\n"
        "from dashboard import settings\n"
        "logging.config.dictConfig(settings.LOGGING)\n"
        "root = logging.getLogger()\n"
        "console = root.handlers[0]\n"
        "print(logging.getLogger('lab.worker').isEnabledFor(logging.WARNING),"
        " logging.getLevelName(console.level))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "error"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "ERROR"]


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123"),
        ("0.0.0.0", "http://127.0.0.1:8123"),  # bound to every interface: the loopback
        ("::", "http://[::1]:8123"),
        ("::1", "http://[::1]:8123"),
        ("localhost", "http://localhost:8123"),
    ],
)
def test_lab_base_url_is_by_default_the_web_servers_own_address(host, address):
    assert lab_base_url("", host, 8123) == address


def test_lab_base_url_set_is_kept_without_its_trailing_slash():
    assert (
        lab_base_url(" https://lab.example:8443/base/ ", "h", 1) == "https://lab.example:8443/base"
    )


@pytest.mark.parametrize(
    "text",
    [
        "localhost:8000",
        "ftp://lab",
        "http://",
        "/lab",
        "http://lab?x=1",
        "http://lab#top",
        "http://user:pw@lab",
        "http://lab:port",
        "http://lab:0",
        "http://la b",
    ],
)
def test_a_bad_lab_base_url_is_refused(text):
    with pytest.raises(ValueError, match="^LAB_BASE_URL must be an http:// or https:// URL"):
        lab_base_url(text, "127.0.0.1", 8000)


def read_settings(name: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """A setting as a new process reads it, from ``environ`` (LAB_BASE_URL unset unless given)."""
    env = {k: v for k, v in os.environ.items() if k not in {"LAB_BASE_URL", "HOST", "PORT"}}
    return subprocess.run(
        [sys.executable, "-c", f"from dashboard import settings; print(settings.{name})"],
        cwd=ROOT,
        env={**env, **environ},
        capture_output=True,
        text=True,
    )


def test_a_process_sends_the_lab_requests_to_the_port_it_is_told_to_serve():
    done = read_settings("LAB_BASE_URL", HOST="0.0.0.0", PORT="8123")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://127.0.0.1:8123"


def test_a_bad_lab_base_url_stops_the_process_at_start_up_saying_why():
    done = read_settings("LAB_BASE_URL", LAB_BASE_URL="localhost:8000")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "ValueError: LAB_BASE_URL must be an http:// or https:// URL such as"
        " http://127.0.0.1:8000 (no user, query or fragment), not 'localhost:8000'"
    )
