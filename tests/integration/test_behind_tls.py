"""Behind a proxy that ends TLS (LIFECYCLE_HTTPS=on): a real daphne told so, reached as the
proxy would reach it (X-Forwarded-Proto), redirects plain http, keeps its cookies to https,
sends HSTS, lets a login through from its https origin or a trusted one, and refuses a
websocket from an http page. Bad values stop a process at start-up, saying why."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from lifecycle.people import accounts
from tests.conftest import ROOT
from tests.integration.web import web_process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TRUSTED = "https://inspector.example"
HTTPS = {"X-Forwarded-Proto": "https"}  # what the proxy adds to each request it passes on


class Web:
    """A daphne with LIFECYCLE_HTTPS on, on the test database."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.origin = f"https://{self.host}"

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: str = ""
    ) -> tuple[int, http.client.HTTPMessage, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(
                method, path, body=body or None, headers={"Host": self.host, **(headers or {})}
            )
            response = conn.getresponse()
            return response.status, response.headers, response.read().decode()
        finally:
            conn.close()

    def websocket(self, origin: str, cookie: str) -> int:
        """The status of a websocket handshake on /ws/feed: 101 opened, 403 refused."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(
                (
                    "GET /ws/feed HTTP/1.1\r\n"
                    f"Host: {self.host}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    f"Origin: {origin}\r\nCookie: {cookie}\r\nX-Forwarded-Proto: https\r\n\r\n"
                ).encode()
            )
            return int(sock.recv(1024).split(b"\r\n", 1)[0].split()[1])


def cookies(headers: http.client.HTTPMessage) -> dict[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for header in headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return dict(jar)


@pytest.fixture(scope="module")
def web(postgres: None, django_db_setup: None, django_db_blocker: Any) -> Iterator[Web]:
    env = {
        "ALLOWED_HOSTS": "127.0.0.1,inspector.example",
        "LIFECYCLE_HTTPS": "on",
        "LIFECYCLE_TRUSTED_ORIGINS": TRUSTED,
    }
    # Plain daphne: the settings, not the web process's bounds, are what is tested here
    with web_process(
        django_db_blocker, env, module="daphne", probe_headers="X-Forwarded-Proto: https\r\n"
    ) as started:
        yield Web(started.port)


def login(web: Web, origin: str, name: str, password: str) -> tuple[int, dict[str, Any]]:
    """A login from the page at ``origin``, through the proxy: the form, then its post."""
    status, headers, page = web.request("GET", "/login", HTTPS)
    assert status == 200
    csrf = cookies(headers)["csrftoken"].value
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token
    form = {"username": name, "password": password, "csrfmiddlewaretoken": token.group(1)}
    status, headers, _ = web.request(
        "POST",
        "/login",
        {
            **HTTPS,
            "Origin": origin,
            "Referer": f"{origin}/login",
            "Cookie": f"csrftoken={csrf}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        urlencode(form),
    )
    return status, cookies(headers)


def test_plain_http_is_redirected_and_https_gets_hsts_and_secure_cookies(web):
    # A browser on plain http is sent to https
    status, headers, _ = web.request("GET", "/login")
    assert status == 301 and headers["Location"] == f"https://{web.host}/login"
    assert "Strict-Transport-Security" not in headers
    # But the lab's API, which the probe calls at the server's own plain address, is not
    assert web.request("GET", f"/lab/api/tasks/{uuid.uuid4()}")[0] == 401

    # Through the proxy (https): HSTS for a year, and cookies only over https
    status, headers, _ = web.request("GET", "/login", HTTPS)
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert cookies(headers)["csrftoken"]["secure"] is True


def test_a_login_through_the_https_origin_and_a_trusted_one(web):
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    password = accounts.add(name, "viewer")

    # From this host's https page: logged in, with a Secure session cookie
    status, jar = login(web, web.origin, name, password)
    assert status == 302, jar
    assert jar["sessionid"]["secure"] is True and jar["sessionid"]["httponly"] is True
    # From a trusted origin (a proxy that names the site otherwise): logged in too
    assert login(web, TRUSTED, name, password)[0] == 302
    # From this host's plain http page, or another https site: the CSRF check refuses it
    assert login(web, f"http://{web.host}", name, password)[0] == 403
    assert login(web, "https://evil.example", name, password)[0] == 403


def test_a_websocket_from_an_http_page_is_refused_behind_tls(web):
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    status, jar = login(web, web.origin, name, accounts.add(name, "viewer"))
    assert status == 302
    cookie = f"sessionid={jar['sessionid'].value}"
    assert web.websocket(web.origin, cookie) == 101
    assert web.websocket(TRUSTED, cookie) == 101
    assert web.websocket(f"http://{web.host}", cookie) == 403
    assert web.websocket("https://evil.example", cookie) == 403


async def handshake(origin: bytes, cookie: str, host: bytes = b"127.0.0.1:8000") -> bool:
    from dashboard.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/feed",
        headers=[(b"origin", origin), (b"host", host), (b"cookie", cookie.encode())],
    )
    connected, _ = await communicator.connect()
    await communicator.disconnect()
    return connected


async def test_the_websocket_origin_check_compares_the_scheme(postgres, settings):
    @database_sync_to_async
    def session() -> str:
        name = f"viewer-{uuid.uuid4().hex[:6]}"
        c = Client()
        assert c.login(username=name, password=accounts.add(name, "viewer"))
        return f"sessionid={c.cookies['sessionid'].value}"

    cookie = await session()
    # Plain http (the default): an https page of this host and port is not this site
    assert await handshake(b"http://127.0.0.1:8000", cookie) is True
    assert await handshake(b"https://127.0.0.1:8000", cookie) is False
    # Behind TLS: the https page is, the http one is not
    settings.LIFECYCLE_HTTPS = True
    settings.CSRF_TRUSTED_ORIGINS = [TRUSTED]
    assert await handshake(b"https://127.0.0.1:8000", cookie) is True
    assert await handshake(b"http://127.0.0.1:8000", cookie) is False
    assert await handshake(b"https://127.0.0.1:9999", cookie) is False


def manage_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_H")}
    env.pop("LIFECYCLE_TRUSTED_ORIGINS", None)
    return {**env, "DJANGO_SETTINGS_MODULE": "dashboard.settings", **values}


def test_check_deploy_is_clean_with_https_on(postgres):
    def check(**values: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=manage_env(DEBUG="off", **values),
            capture_output=True,
            text=True,
            timeout=120,
        )

    plain = check()
    assert plain.returncode != 0 and "security.W004" in plain.stderr  # as it says behind TLS
    behind_tls = check(LIFECYCLE_HTTPS="on")
    assert behind_tls.returncode == 0, behind_tls.stderr
    assert "no issues" in behind_tls.stdout


@pytest.mark.parametrize(
    "values, says",
    [
        ({"LIFECYCLE_HTTPS": "ture"}, "LIFECYCLE_HTTPS must be on or off"),
        ({"DEBUG": "maybe"}, "DEBUG must be on or off"),
        ({"LIFECYCLE_HTTPS": "on", "LIFECYCLE_HSTS_SECONDS": "1y"}, "whole number of seconds"),
        (
            {"LIFECYCLE_HTTPS": "on", "LIFECYCLE_TRUSTED_ORIGINS": "http://inspector.example"},
            "each origin must be https://host",
        ),
        ({"LIFECYCLE_TRUSTED_ORIGINS": TRUSTED}, "LIFECYCLE_HTTPS is off"),
    ],
)
def test_a_bad_value_stops_the_process_at_start_up(values, says):
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=manage_env(**values),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    assert says in started.stderr.strip().splitlines()[-1]
