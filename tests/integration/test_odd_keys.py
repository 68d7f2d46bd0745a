"""A task key is whatever the observed system uses: one with "/", spaces, quotes, "#", "?",
markup or dot segments opens its page and its JSON, and its websocket follows it live; no
link to a key leaves its task's page."""

from __future__ import annotations

import re
import uuid
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from dashboard.asgi import application
from dashboard.routing import websocket_urlpatterns
from lifecycle.models import Event

pytestmark = [pytest.mark.integration]

ODD = [
    "tenant/42/job 7",
    'say "hi" it\'s #3',
    "a?b=c&d=%2F",
    "<b>bold</b> ünïcode",
    "trailing/",
    "../../admin/auth/user/",
    "..",
    ".",
    "a/./b/../c",
    "~../~.",  # what a dot segment is escaped as (dashboard.converters), itself a key
]
# Keys whose links a browser would resolve to another page, were they written as they are.
CLIMBING = ["../../admin/auth/user/", "..", ".", "a/./b/../c", "../tasks/other"]


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


@pytest.mark.django_db
@pytest.mark.parametrize("key", CLIMBING)
def test_a_key_with_dot_segments_links_to_its_own_page(client, postgres, key: str) -> None:
    # Given a task whose key climbs out of /tasks/ if written as it is
    Event.objects.create(task_key=key, source="api", kind="read", status="RUNNING")
    # When the home page lists it, and a browser resolves the link (removing dot segments,
    # as RFC 3986 and the WHATWG URL standard both do)
    home = client.get("/").content.decode()
    hrefs = re.findall(r'<a class="task-link" href="([^"]*)"', home)
    assert len(hrefs) == 1
    resolved = urljoin("http://testserver/", hrefs[0].replace("&amp;", "&"))
    # Then it stays on a task page, and that page is this key's
    path = urlsplit(resolved).path
    assert path.startswith("/tasks/"), path
    page = client.get(path)
    assert page.status_code == 200
    assert page.context["task_key"] == key
    # And so do the task page's JSON, its export, its live socket and the JSON's own link
    timeline = client.get(reverse("dashboard:api-timeline", args=[key])).json()
    assert urlsplit(urljoin("http://testserver/", timeline["url"])).path == path
    assert client.get(reverse("dashboard:api-otlp", args=[key])).status_code == 200
    socket = re.search(r'ws-connect="([^"?]*)', page.content.decode())
    assert socket is not None
    socket_path = unquote(urlsplit(urljoin("http://testserver/", socket[1])).path)
    routes = [route.resolve(socket_path.lstrip("/")) for route in websocket_urlpatterns]
    assert [match.kwargs for match in routes if match] == [{"task_key": key}]


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
