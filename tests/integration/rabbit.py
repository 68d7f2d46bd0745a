"""Helpers the tests over RabbitMQ share (test_ingest, test_publisher_*); their fixtures
(a channel, a tap, the fault proxy, a running ingestor) are in ``conftest.py``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from lifecycle import events
from lifecycle.scenarios.faults import TcpProxy

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def queue_state(channel: Any, name: str) -> tuple[int, int]:
    """(ready messages, consumers) of a queue."""
    ok = channel.queue_declare(name, passive=True).method
    return ok.message_count, ok.consumer_count


def message(task: str, kind: str = "enqueue", **body: Any) -> dict[str, Any]:
    return events.make_message(source="broker", kind=kind, task=task, body=body)


def proxied_url(proxy: TcpProxy) -> str:
    parts = urlsplit(settings.AMQP_URL)
    return urlunsplit(
        parts._replace(netloc=f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:{proxy.port}")
    )
