"""The web process: daphne, with two bounds a port open to anyone needs and daphne lacks.

``python -m dashboard.serve`` takes daphne's own arguments (``lifecycle up`` runs it so).

- **A request body past its cap is refused before it is read.** Twisted reads a whole
  body (to a temporary file) before daphne sees the request, and daphne then queues all
  of it, at once, to the application: a 1 GiB anonymous POST cost 1 GiB of memory before
  any 401. Here a ``Content-Length`` past the cap gets a 413 as soon as the headers are
  in, and a chunked body is cut off (413) as soon as it passes the cap; nothing of it is
  kept. The cap is Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (what any view would accept)
  plus 64 KiB, and for the two import routes the import's own cap plus 1 MiB.
- **A body must keep coming**: past ``LIFECYCLE_HEADER_TIMEOUT`` from its first byte, it
  must have averaged ``MIN_BODY_RATE`` (16 KiB/s), checked every second, or it is
  answered 408 and closed (a slow POST held a connection and a temporary file for ever).
- **Headers must arrive within ``LIFECYCLE_HEADER_TIMEOUT`` seconds** of a request's
  first byte (or of the connection, for its first request): a client that trickles them
  (slowloris) is answered 408 and closed; a connection with no whole request line within
  that time, first or next on a kept-alive connection, is closed. Twisted only closes a
  connection idle for 60 s, and a byte a minute keeps it forever.

A deployment that runs plain ``daphne`` instead must cap these at its proxy (nginx:
``client_max_body_size``, ``client_header_timeout``); the README says so.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from daphne import http_protocol, server
from daphne.cli import CommandLineInterface
from twisted.internet import reactor as _reactor

from dashboard import replies

reactor: Any = _reactor  # the running reactor (typed loosely by Twisted)

log = logging.getLogger("lifecycle.serve")

BODY_MARGIN = 64 * 1024  # headers of a multipart part, a form's other fields
IMPORT_MARGIN = 1024 * 1024  # the multipart envelope of an import's file
IMPORT_PATHS = (b"/api/import", b"/import")
# Bytes a second a body must average once the header timeout's grace is over: a phone on a
# slow link sends far more; a connection held open a byte at a time sends far less.
MIN_BODY_RATE = 16 * 1024


def body_cap(path: bytes) -> int:
    """The most bytes a request body to ``path`` (without its query) may hold."""
    from django.conf import settings

    from lifecycle.store import imports

    if path.split(b"?", 1)[0].rstrip(b"/") in IMPORT_PATHS:
        return imports.MAX_IMPORT_BYTES + IMPORT_MARGIN
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440) + BODY_MARGIN


def header_timeout() -> float:
    from django.conf import settings

    return float(settings.LIFECYCLE_HEADER_TIMEOUT)


def _answer(channel: Any, status: bytes, text: bytes) -> None:
    """Answer on the raw connection and close it (the request never reaches Django)."""
    transport = channel.transport
    if transport is None:
        return
    transport.write(
        b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: " + str(len(text)).encode() + b"\r\nConnection: close\r\n\r\n" + text
    )
    channel.loseConnection()


def _peer(request: Any) -> str:
    transport = getattr(request.channel, "transport", None)
    peer: Any = transport.getPeer() if transport is not None else None
    return f"{peer.host}:{peer.port}" if hasattr(peer, "host") else "?"


class BoundedRequest(http_protocol.WebRequest):
    """daphne's request, refusing a body past its cap and headers that come too slowly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = False
        self.received = 0
        self.cap = 0
        self.channel.lifecycle_requests = getattr(self.channel, "lifecycle_requests", 0) + 1
        self.headers_due: Any = reactor.callLater(header_timeout(), self.headers_late)
        self.body_due: Any = None
        self.body_started = 0.0
        self.body_in = False

    def headers_late(self) -> None:
        self.headers_due = None
        if not self.refused and self.channel is not None:
            self.refused = True
            log.warning(
                "headers not in after %.0f s from %s: closed", header_timeout(), self.client_addr
            )
            _answer(
                self.channel, b"408 Request Timeout", b"the request's headers came too slowly\n"
            )

    def _headers_in(self) -> None:
        if self.headers_due is not None and self.headers_due.active():
            self.headers_due.cancel()
        self.headers_due = None

    def gotLength(self, length: int | None) -> None:
        self._headers_in()
        if self.refused:
            return
        self.cap = body_cap(self.channel._path or b"")
        if length is not None and length > self.cap:
            self.refuse(length)
            return
        super().gotLength(length)
        if length != 0:  # a body comes: it must keep coming
            self.body_started = reactor.seconds()
            self.body_due = reactor.callLater(1, self.body_pace)

    def body_pace(self) -> None:
        """After the header timeout's grace, a body must have come at MIN_BODY_RATE on
        average: one trickled a byte at a time (slow POST) held its connection and a
        temporary file for ever, and 10,000 of them took every descriptor."""
        self.body_due = None
        if self.refused or self.body_in or self.channel is None:
            return
        late = reactor.seconds() - self.body_started - header_timeout()
        if late > 0 and self.received < late * MIN_BODY_RATE:
            self.refused = True
            log.warning(
                "a request body from %s came too slowly (%d bytes in %.0f s): closed",
                _peer(self),
                self.received,
                reactor.seconds() - self.body_started,
            )
            _answer(self.channel, b"408 Request Timeout", b"the request's body came too slowly\n")
            return
        self.body_due = reactor.callLater(1, self.body_pace)

    def refuse(self, size: int) -> None:
        self.refused = True
        self.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" for this one
        log.warning(
            "a request body of %s bytes or more from %s refused (at most %s)",
            size,
            _peer(self),
            self.cap,
        )
        _answer(
            self.channel,
            b"413 Content Too Large",
            f"a request body here holds at most {self.cap} bytes\n".encode(),
        )

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return  # the connection is closing: what still comes is dropped
        self.received += len(data)
        if self.received > self.cap:
            self.refuse(self.received)
            return
        super().handleContentChunk(data)

    def process(self) -> Any:
        result = super().process()  # sets client_addr before its first wait
        replies.record(self.client_addr, self)
        return result

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.body_in = True
        if self.refused:
            return
        super().requestReceived(command, path, version)

    def finish(self) -> None:
        channel = self.channel
        replies.forget(self.client_addr, self)
        super().finish()
        if channel is not None and not self.refused:
            # A kept-alive connection gets as long for its next request as for its first.
            begun = getattr(channel, "lifecycle_requests", 0)
            reactor.callLater(header_timeout(), _next_request_late, channel, begun)

    def connectionLost(self, reason: Any) -> None:
        replies.forget(self.client_addr, self)
        self._headers_in()
        if self.body_due is not None and self.body_due.active():
            self.body_due.cancel()
        self.body_due = None
        super().connectionLost(reason)


class BoundedHTTPFactory(http_protocol.HTTPFactory):
    """Builds connections whose requests are ``BoundedRequest``; a connection that has
    not begun a request within the header timeout is closed."""

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedRequest
        channel = getattr(protocol, "_channel", protocol)
        reactor.callLater(header_timeout(), _next_request_late, channel, 0)
        return protocol


def _next_request_late(channel: Any, begun: int) -> None:
    """Close a connection on which no request began since ``begun`` were: not a whole
    request line within the timeout (a connection idle that long is closed too, as any
    server closes a kept-alive connection it no longer needs)."""
    transport = getattr(channel, "transport", None)
    if transport is not None and getattr(channel, "lifecycle_requests", 0) == begun:
        transport.loseConnection()


def main(argv: list[str] | None = None) -> None:
    import os

    import django

    from lifecycle.runtime import allocator

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    allocator.limit_arenas()  # before the view threads start (lifecycle/runtime/allocator.py)
    django.setup()
    server.HTTPFactory = BoundedHTTPFactory  # daphne's Server.run builds its factory so
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
