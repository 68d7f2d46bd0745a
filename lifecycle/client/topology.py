"""The RabbitMQ names events travel through, declared by whoever connects first.

The topic exchange ``<namespace>.events`` and the durable queue ``<namespace>.ingest``
bound to it with ``#``: a publisher declares both before its first publish, so an event is
never unroutable on a fresh RabbitMQ because the ingestor has not started yet. The
ingestor also declares ``<namespace>.dead``, its dead-letter queue. Declaring what exists
with the same arguments is a no-op, so every process may do it.
"""

from __future__ import annotations

from typing import Any

from lifecycle.client import config


def ingest_queue(namespace: str | None = None) -> str:
    return f"{namespace or config.namespace()}.ingest"


def dead_queue(namespace: str | None = None) -> str:
    return f"{namespace or config.namespace()}.dead"


def declare(channel: Any, namespace: str | None = None, *, dead: bool = False) -> None:
    """The exchange and the ingest queue bound to every routing key (and ``dead``'s queue)."""
    exchange = config.exchange_name(namespace)
    channel.exchange_declare(exchange, "topic", durable=True)
    channel.queue_declare(ingest_queue(namespace), durable=True)
    channel.queue_bind(ingest_queue(namespace), exchange, routing_key="#")
    if dead:
        channel.queue_declare(dead_queue(namespace), durable=True)
