"""An outside attack on the login throttle: guesses sent at once, not one after another.

Every attempt checked ``locked`` before the first of them was counted, so 40 wrong
passwords fired together were all checked (each answered "do not match", none 429) and a
right one among them logged in; 40 names from one address were all checked too, past
its 20. Of attempts made at once, at most the limit may have their password checked.
Real sockets against a real web process (``python -m dashboard.serve``)."""

from __future__ import annotations

import http.client
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from lifecycle.models import LoginFailure, LoginLockout
from lifecycle.people import accounts
from tests.integration.web import web_process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Web:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            cookies = {
                value.split("=", 1)[0]: value.split(";", 1)[0]
                for name, value in response.getheaders()
                if name.lower() == "set-cookie"
            }
            return response.status, cookies, response.read().decode(errors="replace")
        finally:
            conn.close()

    def login_form(self) -> tuple[str, str]:
        """A fresh browser's login page: its CSRF cookie and the form's token."""
        status, cookies, html = self.request("GET", "/login")
        assert status == 200
        match = CSRF.search(html)
        assert match
        return cookies["csrftoken"], match.group(1)


@pytest.fixture(scope="module")
def web(postgres: None, django_db_setup: None, django_db_blocker: Any) -> Iterator[Web]:
    with web_process(django_db_blocker) as started:
        yield Web(started.port)


def at_once(web: Web, attempts: list[tuple[str, str]]) -> list[tuple[int, bool]]:
    """Post every (name, password) to /login together, each from a fresh browser: each
    answer's status and whether it logged in."""
    forms = [web.login_form() for _ in attempts]
    answers: list[tuple[int, bool]] = [(0, False)] * len(attempts)
    start = threading.Barrier(len(attempts))

    def post(i: int) -> None:
        (cookie, token), (name, password) = forms[i], attempts[i]
        body = urlencode({"csrfmiddlewaretoken": token, "username": name, "password": password})
        headers = {
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"http://127.0.0.1:{web.port}",
        }
        start.wait()
        status, cookies, _ = web.request("POST", "/login", body, headers)
        answers[i] = (status, status == 302 and "sessionid" in cookies)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(attempts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


@pytest.fixture
def fresh() -> None:
    LoginFailure.objects.all().delete()
    LoginLockout.objects.all().delete()


def test_forty_guesses_at_once_check_at_most_five_passwords(web: Web, fresh: None) -> None:
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    password = accounts.add(name, "viewer")

    # 40 wrong passwords for one name, and the right one, sent together
    answers = at_once(web, [(name, f"guess {i}") for i in range(40)] + [(name, password)])

    checked = [status for status, _ in answers[:-1] if status == 200]  # "do not match"
    refused = [status for status, _ in answers[:-1] if status == 429]
    assert len(checked) <= 5, f"{len(checked)} wrong passwords were checked, not at most 5"
    assert len(checked) + len(refused) == 40
    # The name is locked now, the right password included
    assert at_once(web, [(name, password)]) == [(429, False)]
    assert LoginLockout.objects.filter(scope="username", key=name).exists()


def test_forty_names_at_once_from_one_address_check_at_most_twenty(web: Web, fresh: None) -> None:
    answers = at_once(web, [(f"guess-{uuid.uuid4().hex[:8]}", "wrong") for _ in range(40)])

    checked = [status for status, _ in answers if status == 200]
    assert len(checked) <= 20, f"{len(checked)} logins from one address were checked, not 20"
    assert all(status in (200, 429) for status, _ in answers)
    assert LoginLockout.objects.filter(scope="address", key="127.0.0.1").exists()
