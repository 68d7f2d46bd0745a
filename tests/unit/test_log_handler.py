"""The log handler's flush: logging.shutdown() waits for what was published (a process
that ends on purpose keeps its last warning), and makes no publisher where none was."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lifecycle.client import publisher as publisher_module
from lifecycle.client.logs import FLUSH_TIMEOUT, LifecycleLogHandler

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self) -> None:
        self.flushes: list[tuple[float, float | None]] = []

    def flush(self, timeout: float = 5.0, *, unreachable: float | None = None) -> bool:
        self.flushes.append((timeout, unreachable))
        return True


def test_logging_shutdown_flushes_the_publisher(monkeypatch: Any) -> None:
    monkeypatch.setenv("LIFECYCLE_SHUTDOWN_FLUSH", "12.5")
    recorder = Recorder()
    handler = LifecycleLogHandler("test", publisher=recorder)  # type: ignore[arg-type]
    logging.shutdown([lambda: handler])  # what os._exit's callers run first
    # As long as the setting allows while RabbitMQ is there, a few seconds while it is not
    assert recorder.flushes == [(12.5, FLUSH_TIMEOUT)]


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 30.0), ("0", 0.0), ("90", 90.0), ("nan", 30.0), ("x", 30.0)]
)
def test_the_shutdown_flush_setting(monkeypatch: Any, value: str | None, seconds: float) -> None:
    if value is None:
        monkeypatch.delenv("LIFECYCLE_SHUTDOWN_FLUSH", raising=False)
    else:
        monkeypatch.setenv("LIFECYCLE_SHUTDOWN_FLUSH", value)
    assert publisher_module.shutdown_flush() == seconds


def test_a_flush_with_nothing_published_makes_no_publisher(monkeypatch: Any) -> None:
    monkeypatch.setattr(publisher_module, "_publisher", None)
    LifecycleLogHandler("test").flush()
    assert publisher_module.current() is None


def test_django_logging_setting_makes_the_handler_with_the_processes_role(
    monkeypatch: Any,
) -> None:
    # Given a Django project's LOGGING, in the worker process (LIFECYCLE_PROCESS_ROLE=worker)
    import logging.config

    monkeypatch.setenv("LIFECYCLE_PROCESS_ROLE", "worker")
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        # When Django configures logging with the README's handler entries
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "lifecycle": {"()": "lifecycle.client.LifecycleLogHandler"},
                    "by_class": {"class": "lifecycle.client.LifecycleLogHandler"},
                },
                "root": {"handlers": ["lifecycle", "by_class"], "level": "INFO"},
            }
        )
        made = [h for h in root.handlers if isinstance(h, LifecycleLogHandler)]
        # Then both ways make the handler, at WARNING, named after the process's role
        assert [(h.role, h.level) for h in made] == [("worker", logging.WARNING)] * 2
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in before[0]:  # dictConfig took pytest's own handlers off the root
            root.addHandler(handler)
        root.setLevel(before[1])
