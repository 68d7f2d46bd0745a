"""An outside attack on the websocket hello: text that is JSON in form but that Python's
``json`` cannot read.

``_hello`` caught ``JSONDecodeError`` only. A hello nested 100,000 arrays deep raised
``RecursionError``, and one with a number of 5,000 digits ``ValueError`` (Python's limit
of 4,300 digits for an int): the consumer died, the socket closed with 1011, and daphne
logged a 50-line traceback each time, where any other hello that is not one (``not
json``, ``[1,2]``, a binary frame) is ignored and the page stays live. Now they are
ignored too. Against the real database."""

from __future__ import annotations

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from dashboard.asgi import application
from lifecycle.models import Event

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("public_read"),
]

UNREADABLE = [
    '{"type": "hello", "have": [' + "[" * 100_000 + "]" * 100_000 + "]}",
    '{"type": "hello", "have": [' + "9" * 5000 + "]}",
    '{"type": "hello", "known_until": ' + "9" * 5000 + "}",
]


@database_sync_to_async
def add_event(task: str) -> int:
    return Event.objects.create(
        task_key=task, source="api", kind="read", status="RUNNING", body={"i": 1}
    ).id


@pytest.mark.parametrize("text", UNREADABLE, ids=["deep", "long-int-have", "long-int-known"])
async def test_an_unreadable_hello_is_ignored_like_any_other_non_hello(hub, text):
    task = f"hello-{uuid.uuid4().hex[:8]}"
    event = await add_event(task)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/tasks/{task}",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )
    connected, _ = await communicator.connect()
    assert connected
    try:
        # When the page's first message is one json cannot read, then a real hello
        await communicator.send_to(text_data=text)
        await communicator.send_to(text_data=json.dumps({"type": "hello", "have": []}))

        # Then the socket is still live and the real hello is answered with the event
        html = await communicator.receive_from(timeout=5)
        assert f'id="event-{event}"' in html
    finally:
        await communicator.disconnect()
