"""How much of a response the web process holds unsent, per client: what lets a streamed
export wait for a client that reads slowly instead of piling its whole document up.

daphne writes every chunk an application sends to the connection at once, with no
backpressure: a client that stopped reading a 70 MB export had all 70 MB held in the web
process (four of them on 20,000 events: 118 MB). ``python -m dashboard.serve`` records
each request it is answering here (by the ASGI scope's ``client``); ``buffered`` tells
how many bytes its connection has not yet sent. Under another server it knows nothing
(None), and a stream goes on as before. No Twisted import: the application imports this.
"""

from __future__ import annotations

import weakref
from typing import Any

_replying: dict[tuple[str, int], weakref.ref[Any]] = {}


def record(client: Any, request: Any) -> None:
    if client:
        _replying[(str(client[0]), int(client[1]))] = weakref.ref(request)


def forget(client: Any, request: Any) -> None:
    if client:
        key = (str(client[0]), int(client[1]))
        ref = _replying.get(key)
        if ref is not None and ref() in (request, None):
            del _replying[key]


def buffered(client: Any) -> int | None:
    """Bytes written to this client's connection and not sent yet; None: not known."""
    if not client:
        return None
    ref = _replying.get((str(client[0]), int(client[1])))
    request = ref() if ref is not None else None
    transport = getattr(getattr(request, "channel", None), "transport", None)
    if transport is None:
        return None
    pending = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return pending + int(getattr(transport, "_tempDataLen", 0))
