"""One request of the probe to the service it observes, and its answer: JSON in and out,
the answer's first ``MAX_RESPONSE`` bytes kept with the headers that say a cache answered,
each wait on the socket bounded (``HTTP_TIMEOUT``) and the whole exchange too
(``HTTP_TOTAL``), a redirect's connections included."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import string
import threading
import time
import urllib.error
import urllib.parse
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
            # a folded line's CR LF, a NUL, an escape: shown and stored as a space
            text = "".join(c if c.isprintable() else " " for c in str(value)[:KEPT_HEADER])
            kept[name] = storable(text)
    return kept


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: a NUL or a lone surrogate (a service's JSON may
    hold ``\\u0000`` or ``\\ud800``) becomes U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


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
        self._began = time.monotonic()

    def __enter__(self) -> _Exchange:
        _current.exchange = self
        self._began = time.monotonic()
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

    def left(self) -> float:
        """Seconds left of the request's time."""
        return self.limit - (time.monotonic() - self._began)

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


MAX_ADDRESSES = 3  # addresses of a name tried, each with what is left of the request's time


def _connected(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None
) -> socket.socket:
    """``socket.create_connection``, but each attempt given only what is left of the
    request's time (a name with many unreachable addresses would take ``HTTP_TIMEOUT``
    each), and its socket watched from then on: the TLS handshake and a proxy's answer to
    CONNECT count in the request's time too."""
    exchange = _current.exchange
    host, port = address
    if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
        timeout = socket.getdefaulttimeout()
    error: OSError | None = None
    for family, kind, proto, _, where in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[
        :MAX_ADDRESSES
    ]:
        left = exchange.left() if exchange is not None else None
        if left is not None and left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        try:
            limits = [t for t in (timeout, left) if t is not None]
            sock.settimeout(min(limits) if limits else None)
            if source_address:
                sock.bind(source_address)
            sock.connect(where)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        _watched(sock)
        return sock
    if exchange is not None and exchange.left() <= 0:
        raise exchange.too_long()
    raise error or OSError(f"no address to connect to for {host!r}")


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


# Request headers sent on to another origin when a redirect leads there: the scenario's
# own (a token) and the lab's key stay with the origin they were written for.
CROSS_ORIGIN_HEADERS = frozenset({"accept", "content-type", "x-lifecycle-client", "user-agent"})


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, as far as an untrusted service may lead them: only to http and
    https; the redirect's own body not read (urllib reads it whole, whatever its length);
    a location that is not a usable URL refused as such; the scenario's headers and the
    lab's key not sent on to another origin (nor from https to http)."""

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> Any:
        location = headers.get("location")
        if location is None:
            return None
        try:
            newurl = urllib.parse.urljoin(req.full_url, location.strip())
            parts = urllib.parse.urlsplit(newurl)
            parts.port  # noqa: B018  (raises ValueError for a port that is not one)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("not an http:// or https:// URL")
            parts.hostname.encode("idna")
            newurl = urllib.parse.quote(newurl, safe=string.punctuation, encoding="iso-8859-1")
        except (ValueError, UnicodeError) as exc:
            fp.close()
            raise http.client.InvalidURL(
                f"{code} redirect to an unusable location {location[:200]!r}: {exc}"
            ) from None
        new = self.redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        visited = new.redirect_dict = getattr(req, "redirect_dict", {})  # type: ignore[attr-defined]
        if visited.get(newurl, 0) >= self.max_repeats or len(visited) >= self.max_redirections:
            fp.close()
            raise http.client.HTTPException(f"{code} redirects loop or run past {len(visited)}")
        visited[newurl] = visited.get(newurl, 0) + 1
        if _origin(newurl) != _origin(req.full_url):
            new.headers = {
                name: value
                for name, value in new.headers.items()
                if name.lower() in CROSS_ORIGIN_HEADERS
            }
        fp.close()  # unread: the connection is not reused
        return self.parent.open(new, timeout=req.timeout)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_opener: urllib.request.OpenerDirector | None = None


def _open(request: urllib.request.Request) -> Any:
    """``urlopen`` (the environment's proxies, redirects followed) through connections
    whose sockets the current ``_Exchange`` watches."""
    global _opener
    if _opener is None:
        _opener = urllib.request.build_opener(_HTTPHandler, _HTTPSHandler, _Redirects)
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
        except (ValueError, OverflowError) as exc:  # a host idna refuses, a port too large
            raise http.client.InvalidURL(f"{url[:200]!r} cannot be asked: {exc}") from None
        if exchange.expired:  # what was read before the socket was shut is not the answer
            raise exchange.too_long()
    received_at = utcnow()
    try:
        body = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep, a 5,000-digit int
        body = {"error": storable(raw[:200].decode(errors="replace"))}
    return Response(status, body if isinstance(body, dict) else {}, sent_at, received_at, kept)
