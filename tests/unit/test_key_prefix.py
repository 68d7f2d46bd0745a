"""``LIFECYCLE_KEY_PREFIX``: every event the client publishes names its task with the prefix
before the application's own key (the broker steps, the log records, the reads, the pytest
plugin's watch), exactly once, and nothing of the inspector's own adds it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from lifecycle import events
from lifecycle.client import config, reads
from lifecycle.client.context import task_context
from lifecycle.client.dramatiq_middleware import LifecycleEvents
from lifecycle.client.logs import LifecycleLogHandler
from lifecycle.client.pytest_plugin import Lifecycle
from tests.published import Published

pytestmark = pytest.mark.unit


class Message:
    def __init__(self, task_id: object) -> None:
        self.message_id, self.actor_name, self.queue_name = "m-1", "work", "default"
        self.options: dict[str, Any] = {"retries": 0}
        self.args: tuple[Any, ...] = ()
        self.kwargs = {"task_id": task_id}


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("LIFECYCLE_KEY_PREFIX", "jobs-db:")
    config.forget()
    yield "jobs-db:"
    monkeypatch.delenv("LIFECYCLE_KEY_PREFIX")
    config.forget()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Published:
    found = Published()
    monkeypatch.setattr(reads, "get_publisher", lambda: found)
    return found


def test_without_the_setting_a_key_is_the_applications_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIFECYCLE_KEY_PREFIX", raising=False)
    config.forget()
    assert config.task_key(5) == "5"
    assert config.key_prefix() == ""


def test_the_prefix_goes_before_the_key_once(prefix: str) -> None:
    assert config.task_key(5) == "jobs-db:5"
    assert config.task_key("5") == "jobs-db:5"


def test_the_setting_is_read_once_until_forgotten(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a prefix read once
    assert config.task_key(1) == "jobs-db:1"
    # When the environment changes under a running process
    monkeypatch.setenv("LIFECYCLE_KEY_PREFIX", "other:")
    # Then the process keeps the value it read (publishing never reads the settings again)
    assert config.task_key(1) == "jobs-db:1"
    config.forget()
    assert config.task_key(1) == "other:1"


def test_broker_steps_carry_the_prefixed_key(prefix: str) -> None:
    # Given the Dramatiq middleware on a recorder
    recorder = Published()
    middleware = LifecycleEvents(publisher=recorder)  # type: ignore[arg-type]
    message = Message(42)
    # When a message is enqueued, started and acked
    middleware.before_enqueue(None, message, None)  # type: ignore[arg-type]
    middleware.after_enqueue(None, message, None)  # type: ignore[arg-type]
    middleware.before_process_message(None, message)  # type: ignore[arg-type]
    middleware.after_process_message(None, message)  # type: ignore[arg-type]
    middleware.after_ack(None, message)  # type: ignore[arg-type]
    # Then every step names task "jobs-db:42"
    assert [(m["kind"], m["task"]) for m in recorder.messages] == [
        ("enqueue", "jobs-db:42"),
        ("start", "jobs-db:42"),
        ("ack", "jobs-db:42"),
    ]


def test_a_log_record_carries_the_prefixed_key(prefix: str) -> None:
    recorder = Published()
    handler = LifecycleLogHandler("api", publisher=recorder)  # type: ignore[arg-type]
    logger = logging.getLogger("test.prefix")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # The application sets its own key; the prefix is the client's business
        with task_context("42"):
            logger.warning("upstream slow")
    finally:
        logger.removeHandler(handler)
    assert [(m["source"], m["task"]) for m in recorder.messages] == [("log", "jobs-db:42")]


def test_reads_carry_the_prefixed_key(prefix: str, recorder: Published) -> None:
    reads.report_read(42, "RUNNING")
    reads.report_cached(42, reads.ReadVersion(xmin=7, snapshot="7:8:", status="RUNNING"))
    with reads.deferred_reads() as held:
        reads.report_read("42", "RUNNING")
    held.report(200)
    assert [m["task"] for m in recorder.messages] == ["jobs-db:42"] * 3


def test_the_pytest_plugin_watches_the_prefixed_key(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the plugin's fixture, with the dashboard's API recorded
    asked: list[tuple[str, str, Any]] = []
    found = Lifecycle(url="http://dashboard.invalid")
    monkeypatch.setattr(
        found, "request", lambda method, path, payload=None: asked.append((method, path, payload))
    )
    # When a test watches its job 42 and expects it to fail
    watched = found.watch(42, expect="FAILED")
    # Then the expectation and the timeline it reads name "jobs-db:42"
    assert watched.task_key == "jobs-db:42"
    ((method, path, payload),) = asked
    assert (method, path, payload["task"]) == ("POST", "/api/events", "jobs-db:42")
    assert found.timeline_path(watched).startswith("/api/tasks/jobs-db%3A42/timeline")


def test_the_inspectors_own_messages_take_no_prefix(prefix: str) -> None:
    # make_message is shared with the ingestor and the importer: it keeps the key it is given
    assert events.make_message(source="api", kind="read", task="42")["task"] == "42"
