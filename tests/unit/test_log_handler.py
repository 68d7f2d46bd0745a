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
        self.flushes: list[float] = []

    def flush(self, timeout: float = 5.0) -> bool:
        self.flushes.append(timeout)
        return True


def test_logging_shutdown_flushes_the_publisher() -> None:
    recorder = Recorder()
    handler = LifecycleLogHandler("test", publisher=recorder)  # type: ignore[arg-type]
    logging.shutdown([lambda: handler])  # what os._exit's callers run first
    assert recorder.flushes == [FLUSH_TIMEOUT]


def test_a_flush_with_nothing_published_makes_no_publisher(monkeypatch: Any) -> None:
    monkeypatch.setattr(publisher_module, "_publisher", None)
    LifecycleLogHandler("test").flush()
    assert publisher_module.current() is None
