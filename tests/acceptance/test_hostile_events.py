"""Every stage of a live stack (`lifecycle up`) fed hostile values at once: the JSON API,
the exchange the ingestor reads, an import, and the maintainer behind them all. Each bad
event is refused alone with its reason; afterwards no process has exited, and the stack
still stores, checks and shows what comes next (issue 19, item 1)."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from typing import Any

import pika
import pytest
from django.conf import settings

from lifecycle.client.config import exchange_name
from lifecycle.events import make_message
from lifecycle.models import Event, TaskCheck
from tests.conftest import Stack, wait_for

pytestmark = [pytest.mark.acceptance]


def hostile(prefix: str) -> list[dict[str, Any]]:
    """Events with the values that once crashed or fooled a stage, and good ones among them."""
    ok = f"{prefix}-ok"

    def read(task: str = ok, **fields: Any) -> dict[str, Any]:
        return {**make_message(source="api", kind="read", task=task, status="RUNNING"), **fields}

    return [
        read(),
        read(status="S" * 33),
        read(status="S" * 64),
        read(status="S" * 65),  # refused: longer than any status
        read(status="bad\u0000status"),  # refused: NUL
        read(task=f"{prefix}-nul\u0000"),  # refused
        read(body={"note": "\ud800"}),  # refused: a lone surrogate
        read(task=f"{prefix}/../../admin"),
        read(task=f"{prefix}/./."),
        read(txid=2**70),  # refused or kept as text: never a crash
        read(body={"n": 10**30, "deep": [[[[[]]]]]}),
        read(at="9999-12-31T23:59:59+00:00"),
        read(at="0001-01-01T00:00:00+00:00"),
        # What once stopped the maintainer at every pass: an expectation of 33 characters
        make_message(source="probe", kind="expect", task=ok, status="E" * 33),
        make_message(source="probe", kind="expect", task=ok, status="E" * 64),
    ]


def publish(stack: Stack, bodies: list[bytes]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        exchange = exchange_name(stack.env["LIFECYCLE_NAMESPACE"])  # the stack's own
        for body in bodies:
            channel.basic_publish(exchange, "batch", body, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def test_hostile_values_at_every_stage_stop_no_process(stack: Stack, live_db: None) -> None:
    started = len(stack.log())
    prefix = f"hostile-{uuid.uuid4().hex[:8]}"
    batch = hostile(prefix)

    # The JSON API: a 200 that names each refused event (a 500 once lost the good ones)
    # (json.dumps writes the lone surrogate as its escape, \ud800, as a client would)
    status, body = stack.post("/api/events", raw=json.dumps(batch).encode())
    assert status == 200, body
    refused = {r["index"] for r in body["rejected"]}
    assert {3, 4, 5, 6} <= refused and 0 not in refused, body
    assert all(r["error"] and "LINE" not in r["error"] for r in body["rejected"])

    # The exchange: the same events again (new uuids), as one batch, then as messages of
    # their own, then bodies that are not events at all
    again = hostile(f"{prefix}-q")
    publish(
        stack,
        [
            json.dumps(again).encode(),
            *(json.dumps(e).encode() for e in hostile(f"{prefix}-m")),
            b"\xff\xfe not json",
            b'{"schema": 1, "source": "api"',
            b"[" * 10_000,
            json.dumps({"schema": 99, "task": prefix}).encode(),
        ],
    )

    # An import whose expectation is longer than any status, and one with a NUL
    for expected in ("X" * 40, "E\u0000"):
        document = {"task": f"{prefix}-import", "expected": expected, "events": []}
        status, _ = stack.post("/api/import", document)
        assert status in (201, 400), status

    # Then, once the hostile ones are behind them, a good event is stored and checked
    after = f"{prefix}-after"
    status, body = stack.post(
        "/api/events", make_message(source="api", kind="read", task=after, status="RUNNING")
    )
    assert status == 200, body
    wait_for(
        lambda: Event.objects.filter(task_key=f"{prefix}-q-ok").exists(),
        30,
        0.2,
        "the exchange's good events",
    )
    wait_for(
        lambda: TaskCheck.objects.filter(task_key=after).exists(),
        60,
        0.5,
        "the maintainer to check the next task",
    )

    # And every page still answers, the odd keys' included
    for path in ("/", f"/tasks/{urllib.parse.quote(prefix)}-ok"):
        assert stack.get(path)[0] == 200, path
    assert stack.get(f"/api/tasks/{urllib.parse.quote(prefix + '-ok')}/timeline")[0] == 200

    # And no process exited meanwhile (the supervisor says so when one does)
    time.sleep(2)
    log = stack.log()[started:]
    assert "exited with status" not in log, log[-3000:]
