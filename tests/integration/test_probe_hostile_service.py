"""The probe's requests (``lifecycle.scenarios.exchange``) against a service that answers
with hostile bytes, from a raw socket of the test's own: whatever comes back, the request
gives an answer or an error its callers record as "no answer" (an ``OSError`` or an
``http.client.HTTPException``), in bounded time and memory, and the scenario's headers and
the lab's key go to no other origin. Each case was a break found by an outside attack."""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lifecycle.scenarios import exchange

pytestmark = pytest.mark.integration

Reply = Callable[[socket.socket, int, bytes], None]  # the connection, its number, its request


class RawService:
    """Accepts connections on 127.0.0.1 and has ``reply`` answer each (in a thread)."""

    def __init__(self, reply: Reply) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.stop = threading.Event()

        def serve() -> None:
            number = 0
            while not self.stop.is_set():
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    return
                request = conn.recv(65536)
                self.requests.append(request)
                threading.Thread(target=self._answer, args=(reply, conn, number, request)).start()
                number += 1

        threading.Thread(target=serve, daemon=True).start()

    def _answer(self, reply: Reply, conn: socket.socket, number: int, request: bytes) -> None:
        with conn:
            try:
                reply(conn, number, request)
            except OSError:
                pass  # the probe gave up on it

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], RawService]]:
    made: list[RawService] = []

    def start(reply: Reply) -> RawService:
        made.append(RawService(reply))
        return made[-1]

    yield start
    for each in made:
        each.close()


def ok(body: bytes, extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


def redirect(location: bytes, extra: bytes = b"Content-Length: 0\r\n") -> bytes:
    return b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n" + extra + b"\r\n"


@pytest.fixture(autouse=True)
def _short_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exchange, "HTTP_TOTAL", 3.0)
    monkeypatch.setattr(exchange, "HTTP_TIMEOUT", 1.5)


@pytest.mark.parametrize(
    "answer",
    [
        ok(b'{"status": "caf\xe9"}'),  # Latin-1
        ok(gzip.compress(b"{}"), b"Content-Encoding: gzip\r\n"),
        ok(('{"ab":"' + "\u00e9" * 600_000 + '"}').encode()),  # UTF-8 cut mid-character at 1 MiB
        ok(b"[" * 100_000),  # deeper than the parser's recursion
        ok(b'{"id": ' + b"1" * 5000 + b"}"),  # past Python's 4,300 digits
        ok(b"\xff\xff", status=b"500 Internal Server Error"),
    ],
    ids=["latin-1", "gzip", "cut-utf-8", "nested", "long-int", "error-bytes"],
)
def test_a_body_that_is_not_json_we_can_read_is_an_answer_with_its_start(
    serve: Callable[[Reply], RawService], answer: bytes
) -> None:
    service = serve(lambda conn, n, request: conn.sendall(answer))

    got = exchange.http_json("GET", f"http://127.0.0.1:{service.port}/", None, "t")

    assert got.http_status in (200, 500)
    assert set(got.body) <= {"error"}  # what it began with, as text, or nothing
    assert "\x00" not in got.body.get("error", "")


@pytest.mark.parametrize(
    "location",
    [
        b"http://[::1/",
        b"http://a..b/",
        b"http://" + b"a" * 64 + b".example/",
        b"http://127.0.0.1:99999999999999999999/",
        b"ftp://127.0.0.1:1/x",
        b"file:///etc/passwd",
        b"data:,{}",
    ],
)
def test_a_redirect_to_a_location_that_is_no_http_url_is_refused_as_such(
    serve: Callable[[Reply], RawService], location: bytes
) -> None:
    service = serve(lambda conn, n, request: conn.sendall(redirect(location)))

    with pytest.raises(http.client.InvalidURL, match="redirect to an unusable location"):
        exchange.http_json("GET", f"http://127.0.0.1:{service.port}/", None, "t")


@pytest.mark.parametrize(
    "body",
    [
        b"Content-Length: 100000000000\r\n",
        b"Content-Length: 100000000000000000000000\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n" + b"F" * 20,
        b"",  # no length: a body to the end of the connection
    ],
    ids=["100-GB", "1e23", "giant-chunk", "endless"],
)
def test_a_redirects_own_body_is_not_read(
    serve: Callable[[Reply], RawService], body: bytes
) -> None:
    def reply(conn: socket.socket, number: int, request: bytes) -> None:
        if number == 0:
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /next\r\n" + body + b"\r\n")
            for _ in range(200):  # 12 MB more, if anyone reads it
                conn.sendall(b"x" * 65536)
        else:
            conn.sendall(ok(b'{"state": "done"}'))

    service = serve(reply)
    began = time.monotonic()

    got = exchange.http_json("GET", f"http://127.0.0.1:{service.port}/", None, "t")

    assert (got.http_status, got.body) == (200, {"state": "done"})
    assert time.monotonic() - began < 2.0


def test_the_scenarios_headers_and_the_lab_key_go_to_no_other_origin(
    serve: Callable[[Reply], RawService],
) -> None:
    def reply(conn: socket.socket, number: int, request: bytes) -> None:
        if number == 0:  # the same origin: the headers go with it
            conn.sendall(redirect(b"/same"))
        elif number == 1:  # another (localhost is another host than 127.0.0.1)
            conn.sendall(redirect(f"http://localhost:{service.port}/other".encode()))
        else:
            conn.sendall(ok(b"{}"))

    service = serve(reply)
    secrets = (("Authorization", "Bearer abc"), ("X-Lifecycle-Lab-Key", "k3y"))

    exchange.http_json("GET", f"http://127.0.0.1:{service.port}/", None, "t", secrets)

    first, same, other = service.requests
    for request in (first, same):
        assert b"Bearer abc" in request and b"k3y" in request
    assert other.startswith(b"GET /other ")
    assert b"Bearer abc" not in other and b"k3y" not in other
    assert b"X-Lifecycle-Client: t" in other  # what says who asks still does


def test_kept_headers_and_a_status_hold_nothing_the_page_or_postgresql_cannot(
    serve: Callable[[Reply], RawService],
) -> None:
    answer = ok(b'{"s": "a\\u0000b\\ud800c"}', b"X-Cache: HIT\x1b[31m red\r\nAge: 1\x7f\r\n")
    service = serve(lambda conn, n, request: conn.sendall(answer))

    got = exchange.http_json("GET", f"http://127.0.0.1:{service.port}/", None, "t")

    assert got.headers == {"x-cache": "HIT [31m red", "age": "1 "}
    assert exchange.storable(got.body["s"]) == "a\ufffdb\ufffdc"


def test_a_name_with_many_unreachable_addresses_takes_the_requests_time_not_each_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a name whose six addresses all hang on connect (a listener whose backlog is full)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    where = listener.getsockname()
    held = []
    for _ in range(4):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(where)
        except BlockingIOError:
            pass
        held.append(sock)
    real = socket.getaddrinfo

    def six(host: str, port: int, *args: object, **kwargs: object) -> list:
        if host == "many.invalid":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", where)] * 6
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(exchange.socket, "getaddrinfo", six)
    try:
        # When the probe asks it, Then it gives up at the request's time (3 s), not 6 x 1.5 s
        began = time.monotonic()
        with pytest.raises(OSError):
            exchange.http_json("GET", f"http://many.invalid:{where[1]}/", None, "t")
        assert time.monotonic() - began < 3.0 + 1.0
    finally:
        for sock in held:
            sock.close()
        listener.close()
