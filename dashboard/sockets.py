"""Live websockets per holder, capped: a session (a person's browser), or, where anyone may
read (``LIFECYCLE_PUBLIC_READ``), the client's address.

Each open socket costs the web process its catch-up and its share of every live batch, so
one holder may keep at most ``LIFECYCLE_WS_PER_SESSION`` open at a time in a process; the
next one is accepted and closed at once with ``CLOSE_CODE`` (a refused handshake would tell
the browser nothing) and a reason, which daphne does not forward: ``lifecycle.js`` words
the code. The counts are this process's: the event loop is the only writer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings

CLOSE_CODE = 4429  # "too many": 4000-4999 are the application's own codes

_open: Counter[str] = Counter()


def holder(scope: dict[str, Any]) -> str:
    """Who a socket counts against: its logged-in session, else (public read) its client's
    address: a cookie that logs nobody in costs nothing to change, so it counts for nothing."""
    user, session = scope.get("user"), scope.get("session")
    if user is not None and user.is_authenticated and session is not None:
        key = session.session_key
        if key:
            return f"session {key}"
    client = scope.get("client") or ("",)
    return f"address {client[0] or 'unknown'}"


def cap() -> int:
    return int(settings.LIFECYCLE_WS_PER_SESSION)


def take(who: str) -> bool:
    """Count one more socket of ``who``; False (nothing counted) when it is at the cap."""
    if _open[who] >= cap():
        return False
    _open[who] += 1
    return True


def release(who: str) -> None:
    _open[who] -= 1
    if _open[who] <= 0:
        del _open[who]


def open_count(who: str) -> int:
    return _open.get(who, 0)


def refusal() -> str:
    """The close reason (at most 123 bytes, the protocol's limit)."""
    return f"too many live pages open: at most {cap()} per session; close one and reload"
