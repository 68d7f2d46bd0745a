"""The wire format of an event (schema version 1), as publishers build it.

The ingestor's side (validation, with the reason a message is refused) is in
``lifecycle.events``; the README documents the fields.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1


def now() -> datetime:
    return datetime.now(UTC)


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
        "uuid": str(uuid.uuid4()),
        "task": task,
        "source": source,
        "kind": kind,
        "status": status,
        "at": (at or now()).isoformat(),
        "txid": txid,
        "body": body or {},
    }


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode()
