"""Websockets end with their session: a logged-out, deleted or expired session, or a user
deactivated, deleted or given a new password, closes its live pages with ``CLOSE_CODE``,
and ``lifecycle.js`` says so in the page (no retry: the page needs a login first).

Two ways, because a session ends in more ways than one:

- a logout (Django's ``user_logged_out``) sends ``session.ended`` to the session's group
  on the channel layer, which each of its sockets joined when it opened: they close at
  once. The group's name is a hash of the session key, which stays out of names and logs.
  With the in-memory layer, that reaches the sockets of the process that served the
  logout;
- every ``INTERVAL`` seconds, one task a process asks the database, in one pass for all
  its sockets, whether each socket's session still logs its user in: it catches the
  rest (another process's logout, an expiry, a session deleted in the admin, a user
  deactivated). A socket costs an entry in ``_sessions`` and its group membership.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare

logger = logging.getLogger(__name__)

CLOSE_CODE = 4401  # "unauthorized": 4000-4999 are the application's own codes
INTERVAL = 5.0  # seconds between two checks of this process's sessions
ENDED = "session.ended"  # the group message; a consumer handles it as session_ended

# This process's sockets by session key, each socket's session key, and each session's
# user (the event loop is the only writer).
_sessions: dict[str, set[Any]] = {}
_keys: dict[Any, str] = {}
_users: dict[str, Any] = {}
_watcher: asyncio.Task[None] | None = None


def group(session_key: str) -> str:
    return "session-" + hashlib.sha256(session_key.encode()).hexdigest()[:40]


class EndsWithSession:
    """For a consumer whose sockets ``join``: closes them when their session ends."""

    async def session_ended(self, message: dict[str, Any]) -> None:
        await _close(self)


async def join(consumer: Any) -> None:
    """Follow ``consumer``'s session (none, for a socket without a logged-in one)."""
    session, user = consumer.scope.get("session"), consumer.scope.get("user")
    key = session.session_key if session is not None else None
    if not key or user is None or not user.is_authenticated:
        return
    _sessions.setdefault(key, set()).add(consumer)
    _keys[consumer] = key
    consumer.session_group_key = key  # for leave(), after release() forgot it
    _users[key] = user.pk
    if consumer.channel_layer is not None:
        await consumer.channel_layer.group_add(group(key), consumer.channel_name)
    _watch()


def forget(consumer: Any) -> str | None:
    """Stop following ``consumer``'s session (synchronous: it runs however the consumer
    ended); the session's key, when it was followed."""
    key = _keys.pop(consumer, None)
    if key is None:
        return None
    consumers = _sessions.get(key, set())
    consumers.discard(consumer)
    if not consumers:
        _sessions.pop(key, None)
        _users.pop(key, None)
    return key


async def leave(consumer: Any) -> None:
    key = forget(consumer) or getattr(consumer, "session_group_key", None)
    if key is not None and consumer.channel_layer is not None:
        await consumer.channel_layer.group_discard(group(key), consumer.channel_name)


async def _close(consumer: Any) -> None:
    await leave(consumer)
    await consumer.close(code=CLOSE_CODE)


def _watch() -> None:
    """Start this process's checker, unless it runs (on this event loop)."""
    global _watcher
    loop = asyncio.get_running_loop()
    if _watcher is None or _watcher.done() or _watcher.get_loop() is not loop:
        _watcher = loop.create_task(_check_forever(), name="session sockets")


async def _check_forever() -> None:
    while _sessions:
        await asyncio.sleep(INTERVAL)
        try:
            gone = await database_sync_to_async(ended)(dict(_users))
        except Exception:
            logger.exception("could not check the live pages' sessions; trying again")
            continue
        for key in gone:
            for consumer in list(_sessions.get(key, ())):
                await _close(consumer)


def ended(sessions: Mapping[str, Any]) -> set[str]:
    """Which of ``sessions`` (session key: its user's pk) no longer log their user in: the
    session gone or expired, the user inactive or gone, or its password changed since (as
    ``django.contrib.auth.get_user`` decides). One query for the sessions, one for the
    users, with the database's sessions (``SESSION_ENGINE`` db or cached_db)."""
    if not sessions:
        return set()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    data: dict[str, dict[str, Any]] = {}
    if hasattr(store, "get_model_class"):
        rows = store.get_model_class().objects.filter(
            session_key__in=list(sessions), expire_date__gt=timezone.now()
        )
        for row in rows.only("session_key", "session_data"):
            data[row.session_key] = store().decode(row.session_data)
    else:  # another engine: one look-up a session
        for key in sessions:
            if found := store(key).load():
                data[key] = found
    users = {
        user.pk: user
        for user in get_user_model()._default_manager.filter(pk__in=set(sessions.values()))
    }
    return {key for key, pk in sessions.items() if not _logs_in(data.get(key), users.get(pk))}


def _logs_in(data: dict[str, Any] | None, user: Any) -> bool:
    if data is None or user is None or not getattr(user, "is_active", True):
        return False
    if str(data.get(SESSION_KEY)) != str(user.pk):
        return False
    if not hasattr(user, "get_session_auth_hash"):
        return True
    sent = data.get(HASH_SESSION_KEY) or ""
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return bool(sent) and any(constant_time_compare(sent, h) for h in hashes)


@receiver(user_logged_out, dispatch_uid="dashboard.session_sockets")
def _logged_out(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    key = session.session_key if session is not None else None
    layer = get_channel_layer()
    if key and layer is not None:
        async_to_sync(layer.group_send)(group(key), {"type": ENDED})
