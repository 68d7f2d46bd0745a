"""One request of the probe to the service it observes, and its answer: JSON in and out,
the answer's first ``MAX_RESPONSE`` bytes kept with the headers that say a cache answered,
each wait on the socket bounded (``HTTP_TIMEOUT``) and the whole exchange too
(``HTTP_TOTAL``), a redirect's connections included."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HTTP_TIMEOUT = 5.0  # seconds of one wait on the socket: to connect, for the next bytes


@dataclass
class Response:
    http_status: int
    body: dict[str, Any]
    sent_at: datetime
    received_at: datetime
    headers: dict[str, str] = field(default_factory=dict)  # the ones that say a cache answered


# Response headers a probe read keeps: a cache between the client and the API says so there,
# and the checker quotes them (response_cache). Each value is cut at KEPT_HEADER characters.
KEPT_HEADERS = ("age", "x-cache", "cache-control")
KEPT_HEADER = 200


def _kept(headers: Any) -> dict[str, str]:
    kept = {}
    for name in KEPT_HEADERS:
        value = headers.get(name) if headers is not None else None
        if value:
            kept[name] = str(value)[:KEPT_HEADER]
    return kept


def utcnow() -> datetime:
    return datetime.now(UTC)


MAX_RESPONSE = 1024 * 1024  # bytes of a response the probe reads; the rest is not kept
# Seconds one request may take in all, its answer read: HTTP_TIMEOUT bounds each wait on
# the socket, so a service that trickles (a streamed or long-polled URL, a byte every few
# seconds) would hold the poller past its run's deadline without this.
HTTP_TOTAL = 10.0


class _Exchange:
    """One request's connections (a redirect opens more), shut when ``HTTP_TOTAL`` is up:
    the read blocked on one returns, and the request says it took too long. Each is watched
    through a duplicate of its socket taken as it connects: a shutdown acts on the
    connection whichever descriptor asks, TLS wraps the socket it was given in another
    object, and the duplicate is this exchange's own until it ends (its number is never
    another connection's)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.sockets: list[socket.socket] = []
        self.expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(limit, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Exchange:
        _current.exchange = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.exchange = None
        with self._lock:
            for sock in self.sockets:
                sock.close()
            self.sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self.sockets.append(sock.dup())
            if self.expired:
                _shut(self.sockets[-1])

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self.sockets:
                _shut(sock)

    def too_long(self) -> TimeoutError:
        return TimeoutError(f"no whole answer within {self.limit:g} s (it trickled in)")


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Current(threading.local):
    exchange: _Exchange | None = None


_current = _Current()


def _watched(sock: socket.socket) -> None:
    exchange = _current.exchange
    if exchange is not None:
        exchange.watch(sock)


def _connected(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None
) -> socket.socket:
    """``socket.create_connection``, its socket watched from then on: the TLS handshake
    and a proxy's answer to CONNECT count in the request's time too."""
    sock = socket.create_connection(address, timeout, source_address)
    _watched(sock)
    return sock


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connected


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connected


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


_opener: urllib.request.OpenerDirector | None = None


def _open(request: urllib.request.Request) -> Any:
    """``urlopen`` (the environment's proxies, redirects followed) through connections
    whose sockets the current ``_Exchange`` watches."""
    global _opener
    if _opener is None:
        _opener = urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)
    return _opener.open(request, timeout=HTTP_TIMEOUT)


def _read(response: Any) -> bytes:
    """Up to ``MAX_RESPONSE`` bytes of the body, a chunk at a time (a shut socket ends it)."""
    chunks, size = [], 0
    while size < MAX_RESPONSE:
        chunk = response.read1(min(65536, MAX_RESPONSE - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def http_json(
    method: str,
    url: str,
    payload: Any,
    client: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in headers:
        request.add_header(name, value)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    request.add_header("X-Lifecycle-Client", client)
    sent_at = utcnow()
    with _Exchange(HTTP_TOTAL) as exchange:
        try:
            try:
                with _open(request) as resp:
                    status, raw, kept = resp.status, _read(resp), _kept(resp.headers)
            except urllib.error.HTTPError as exc:
                status, raw, kept = exc.code, _read(exc), _kept(exc.headers)
        except (OSError, http.client.HTTPException) as exc:
            if exchange.expired:
                raise exchange.too_long() from exc
            raise
        if exchange.expired:  # what was read before the socket was shut is not the answer
            raise exchange.too_long()
    received_at = utcnow()
    try:
        body = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        body = {"error": raw[:200].decode(errors="replace")}
    return Response(status, body if isinstance(body, dict) else {}, sent_at, received_at, kept)
