"""Websockets end with their session: a logout, a deleted session, a deactivated account or
a new password close the session's live pages with 4401; another session's stay open."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import AsyncClient, Client

from dashboard import session_sockets
from dashboard.asgi import application
from lifecycle.people import accounts
from tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def viewer() -> tuple[str, str]:
    """A viewer logged in: their name and session key."""
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    c = Client()
    assert c.login(username=name, password=accounts.add(name, "viewer"))
    return name, c.cookies["sessionid"].value


async def live_page(session_key: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application,
        "/ws/feed",
        headers=[
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
            (b"cookie", f"sessionid={session_key}".encode()),
        ],
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def close_code(communicator: WebsocketCommunicator, within: float) -> int:
    message = await communicator.receive_output(timeout=within)
    assert message["type"] == "websocket.close", message
    return int(message["code"])


async def test_a_logout_closes_that_sessions_sockets_at_once(postgres, monkeypatch):
    # Given two live pages of a viewer's session, one of another session, and no periodic
    # check for a minute (the logout itself must do it)
    monkeypatch.setattr(session_sockets, "INTERVAL", 60.0)
    _, key = await viewer()
    _, other_key = await viewer()
    pages = [await live_page(key), await live_page(key)]
    other = await live_page(other_key)
    for page in [*pages, other]:
        assert await page.receive_nothing(timeout=0.2)

    # When the viewer logs out, from a page of theirs
    browser = AsyncClient()
    browser.cookies["sessionid"] = key
    logout = await browser.post("/logout")
    assert logout.status_code == 302

    # Then both of that session's pages are closed with 4401 within two seconds
    assert [await close_code(page, within=2) for page in pages] == [4401, 4401]
    # And the other session's page stays live, and a new page of the ended session is refused
    assert await other.receive_nothing(timeout=0.5)
    refused = WebsocketCommunicator(
        application,
        "/ws/feed",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )
    assert (await refused.connect())[0] is False
    await other.disconnect()


async def ends_by_delete(name: str, key: str) -> None:
    await database_sync_to_async(Session.objects.filter(session_key=key).delete)()


async def ends_by_deactivation(name: str, key: str) -> None:
    await database_sync_to_async(get_user_model().objects.filter(username=name).update)(
        is_active=False
    )


async def ends_by_new_password(name: str, key: str) -> None:
    def change() -> None:
        user = get_user_model().objects.get(username=name)
        user.set_password(uuid.uuid4().hex)
        user.save()

    await database_sync_to_async(change)()


@pytest.mark.parametrize("end", [ends_by_delete, ends_by_deactivation, ends_by_new_password])
async def test_a_session_ended_otherwise_closes_its_sockets_within_the_check(
    postgres, monkeypatch, end: Callable[[str, str], Awaitable[None]]
):
    # Given a check every 0.3 s, two live pages of a viewer's session and one of another
    monkeypatch.setattr(session_sockets, "INTERVAL", 0.3)
    name, key = await viewer()
    _, other_key = await viewer()
    pages = [await live_page(key), await live_page(key)]
    other = await live_page(other_key)
    assert await pages[0].receive_nothing(timeout=0.8)  # checked twice: still live

    # When the session ends without a logout (another process, the admin, the account)
    await end(name, key)

    # Then its pages close with 4401 at the next check, and the other stays live
    assert [await close_code(page, within=3) for page in pages] == [4401, 4401]
    assert await other.receive_nothing(timeout=0.8)
    await other.disconnect()


async def test_one_check_for_every_socket_of_the_process(postgres, monkeypatch):
    # Given many live pages of several sessions
    monkeypatch.setattr(session_sockets, "INTERVAL", 0.2)
    keys = [(await viewer())[1] for _ in range(3)]
    pages = [await live_page(key) for key in keys for _ in range(4)]

    # Then one task checks them all, and each check is one pass over the sessions
    checkers = [t for t in asyncio.all_tasks() if t.get_name() == "session sockets"]
    assert len(checkers) == 1
    passes: list[dict[str, Any]] = []
    real = session_sockets.ended

    def counted(sessions: dict[str, Any]) -> set[str]:
        passes.append(dict(sessions))
        return real(sessions)

    monkeypatch.setattr(session_sockets, "ended", counted)
    await asyncio.sleep(0.7)
    assert passes and all(sorted(p) == sorted(keys) for p in passes)
    assert len(passes) <= 4

    # And it stops when the last socket closes
    for page in pages:
        await page.disconnect()
    await wait_until(lambda: all(t.done() for t in checkers), "the check to stop")
