"""The wire format of an event (schema version 1), as publishers build it.

The ingestor's side (validation, with the reason a message is refused) is in
``lifecycle.events``; the README documents the fields.
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1


def now() -> datetime:
    return datetime.now(UTC)


class _Uuids:
    """Version-4 UUIDs made from 74 random bits drawn once per process and a 48-bit counter:
    as unique as ``uuid4()`` within what a process publishes (never two alike before 2**48
    events), across processes and restarts by their random part (two processes share it
    once in about 2**37 pairs' lifetimes), at a fraction of its cost: no system call, one
    string format per event."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)  # a child must not repeat the parent

    def reseed(self) -> None:
        self.head = uuid_head()
        self.counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.head}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"


def uuid_head() -> str:
    """The first four groups of a version-4 UUID, random, for a counter's 12 hex digits to
    complete: 48 random bits, version 4, 12 random bits, variant 10, 14 more random bits."""
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    high, middle, low = random >> 32 & 0xFFFFFFFFFFFF, random >> 20 & 0xFFF, random & 0x3FFF
    return f"{high >> 16:08x}-{high & 0xFFFF:04x}-4{middle:03x}-{0x8000 | low:04x}-"


new_uuid = _Uuids()


def make_message(
    *,
    source: str,
    kind: str,
    task: str,
    status: str | None = None,
    at: datetime | None = None,
    txid: int | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a schema-1 message as publishers send it."""
    return {
        "schema": SCHEMA_VERSION,
        "uuid": new_uuid(),
        "task": task,
        "source": source,
        "kind": kind,
        "status": status,
        "at": (at or now()).isoformat(),
        "txid": txid,
        "body": body or {},
    }


# The body of a Dramatiq message's broker event, as the middleware hands it to the publisher
# (a tuple: a worker's thread only reads them): a mark (which no body an application emits
# begins with), then message id, actor, queue, attempt, pid, thread, and whether RabbitMQ
# redelivered it (None: not said).
BROKER_MARK = "lifecycle.broker-fields/1"
BROKER_FIELDS = ("message_id", "actor", "queue", "attempt", "pid", "thread", "redelivered")
BrokerFields = tuple[str, Any, Any, Any, int, int, str, bool | None]
_quote = json.encoder.encode_basestring_ascii  # what json.dumps does to a str


def is_broker_fields(body: object) -> bool:
    return type(body) is tuple and len(body) == 8 and body[0] == BROKER_MARK


def broker_body(fields: BrokerFields) -> dict[str, Any]:
    """The body dict of a broker event's fields (``redelivered`` only if said)."""
    body = dict(zip(BROKER_FIELDS, fields[1:], strict=True))
    if body["redelivered"] is None:
        del body["redelivered"]
    return body


def broker_json(fields: BrokerFields) -> str:
    """The JSON of ``broker_body(fields)``, byte for byte ``json.dumps``'s (compact)."""
    _, message_id, actor, queue, attempt, pid, thread, redelivered = fields
    if not (
        type(message_id) is str
        and type(actor) is str
        and type(queue) is str
        and type(attempt) is int
        and type(pid) is int
        and type(thread) is str
        and (redelivered is None or type(redelivered) is bool)
    ):
        return json.dumps(broker_body(fields), separators=(",", ":"), default=str)
    tail = "}" if redelivered is None else f',"redelivered":{"true" if redelivered else "false"}}}'
    return (
        f'{{"message_id":{_quote(message_id)},"actor":{_quote(actor)},"queue":{_quote(queue)},'
        f'"attempt":{attempt},"pid":{pid},"thread":{_quote(thread)}{tail}'
    )


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode()
