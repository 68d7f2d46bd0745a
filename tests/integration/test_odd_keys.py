"""A task key is whatever the observed system uses: one with "/", spaces, quotes, "#", "?"
or markup opens its page and its JSON, and its websocket follows it live."""

from __future__ import annotations

import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from dashboard.asgi import application
from lifecycle.models import Event

pytestmark = [pytest.mark.integration]

ODD = [
    "tenant/42/job 7",
    'say "hi" it\'s #3',
    "a?b=c&d=%2F",
    "<b>bold</b> ünïcode",
    "trailing/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("key", ODD)
def test_an_odd_key_opens_its_page_and_its_json(client, postgres, key: str) -> None:
    Event.objects.create(task_key=key, source="api", kind="read", status="RUNNING")

    page = client.get(reverse("dashboard:task", args=[key]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<b>bold</b>" not in html  # the key is text, never markup
    timeline = client.get(reverse("dashboard:api-timeline", args=[key]))
    assert timeline.status_code == 200
    assert timeline.json()["task"] == key
    assert timeline.json()["url"].endswith(reverse("dashboard:task", args=[key]))


@pytest.mark.django_db(transaction=True)
async def test_an_odd_keys_websocket_follows_it(postgres, settings) -> None:
    settings.LIFECYCLE_PUBLIC_READ = True  # a socket without a session (see test_access)
    from channels.db import database_sync_to_async

    from lifecycle.feed.hub import get_hub

    key = f"tenant/{uuid.uuid4()}/job #1"
    path = reverse("dashboard:task", args=[key]).replace("/tasks/", "/ws/tasks/", 1)
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    )
    try:
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_json_to({"type": "hello", "have": [], "tasks": []})
        event = await database_sync_to_async(Event.objects.create)(
            task_key=key, source="api", kind="read", status="RUNNING"
        )
        html = await communicator.receive_from(timeout=5)
        while f'id="event-{event.id}"' not in html:
            html = await communicator.receive_from(timeout=5)
    finally:
        await communicator.disconnect()
        await get_hub().stop()
