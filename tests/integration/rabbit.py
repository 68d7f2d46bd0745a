"""Helpers the tests over RabbitMQ share (test_ingest, test_publisher_*); their fixtures
(a channel, a tap, the fault proxy, a running ingestor) are in ``conftest.py``, and they
wait with ``tests.conftest.wait_for``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from lifecycle import events
from lifecycle.scenarios.faults import TcpProxy


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
