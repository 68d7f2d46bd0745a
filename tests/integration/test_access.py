"""Who may look and who may run: sessions with roles, tokens, public read, CSRF for what a
cookie authorizes, and websockets that need a reader from this origin."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from lifecycle.events import make_message
from lifecycle.models import ApiToken, Event, Run
from lifecycle.people import accounts, tokens
from tests.integration.people import as_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def event(task: str = "") -> dict[str, Any]:
    """A read's message as a publisher posts it."""
    return make_message(
        source="api", kind="read", task=task or f"access-{uuid.uuid4()}", status="RUNNING"
    )


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_nobody_reads_without_logging_in(anonymous_client, postgres):
    task = f"secret-{uuid.uuid4()}"
    Event.objects.create(task_key=task, source="db", kind="update", status="X", body={"pw": 1})
    page = anonymous_client.get(f"/tasks/{task}")
    assert page.status_code == 302 and page["Location"].startswith("/login?next=/tasks/")
    for path in (f"/api/tasks/{task}/timeline", "/api/scenarios", "/api/events/1"):
        api = anonymous_client.get(path)
        assert api.status_code == 401, path
        assert "log in, or send Authorization: Bearer" in api.json()["error"]
        assert api["WWW-Authenticate"].startswith("Bearer")
    # The login page and the static files stay open; the lab is for whoever may run
    assert anonymous_client.get("/login").status_code == 200
    assert anonymous_client.get("/static/lifecycle.css").status_code == 200
    assert anonymous_client.get(f"/lab/api/tasks/{uuid.uuid4()}").status_code == 401


def test_public_read_opens_reading_and_never_a_write(anonymous_client, postgres, settings):
    settings.LIFECYCLE_PUBLIC_READ = True
    assert anonymous_client.get("/").status_code == 200
    assert anonymous_client.get("/api/scenarios").status_code == 200
    runs = Run.objects.count()
    refused = anonymous_client.post(
        "/api/scenarios/succeeds/runs", data=b"{}", content_type="application/json"
    )
    assert refused.status_code == 403 and "may not start runs" in refused.json()["error"]
    form = anonymous_client.post("/scenarios/succeeds/runs", {"token": "x"})
    assert form.status_code == 403
    posted = anonymous_client.post("/api/events", data=event(), content_type="application/json")
    assert posted.status_code == 403
    assert Run.objects.count() == runs
    # And the home page offers no Run button to a reader
    assert b'data-testid="run-succeeds"' not in anonymous_client.get("/").content


def test_a_viewer_reads_and_a_runner_runs(postgres):
    viewer, runner = as_role("viewer"), as_role("runner")
    assert viewer.get("/").status_code == 200
    assert b'data-testid="run-succeeds"' not in viewer.get("/").content
    assert viewer.post("/scenarios/succeeds/runs", {"token": "v"}).status_code == 403
    assert b'data-testid="run-succeeds"' in runner.get("/").content
    started = runner.post("/scenarios/succeeds/runs", {"token": uuid.uuid4().hex})
    assert started.status_code == 303
    run = Run.objects.get(pk=int(started["Location"].rsplit("/", 1)[1]))
    assert run.started_by.startswith("runner-")
    page = runner.get(f"/runs/{run.id}").content.decode()
    assert f'data-testid="started-by">{run.started_by}<' in page


def test_tokens_read_and_run_by_role_and_only_their_hash_is_kept(anonymous_client, postgres):
    viewer_row, viewer = tokens.create(f"v-{uuid.uuid4().hex[:6]}", "viewer")
    runner_row, runner = tokens.create(f"r-{uuid.uuid4().hex[:6]}", "runner")
    assert ApiToken.objects.filter(digest=tokens.digest(runner)).exists()
    assert not ApiToken.objects.filter(digest=runner).exists()
    assert runner not in json.dumps(list(ApiToken.objects.values()), default=str)

    assert anonymous_client.get("/api/scenarios", **bearer(viewer)).status_code == 200
    refused = anonymous_client.post(
        "/api/events", data=event(), content_type="application/json", **bearer(viewer)
    )
    assert (
        refused.status_code == 403 and "may not start runs, post events" in refused.json()["error"]
    )
    # A token's write needs no CSRF token: no cookie authorizes it
    strict = Client(enforce_csrf_checks=True)
    stored = strict.post(
        "/api/events", data=event(), content_type="application/json", **bearer(runner)
    )
    assert stored.status_code == 200, stored.content
    started = strict.post(
        "/api/scenarios/succeeds/runs",
        data=b"{}",
        content_type="application/json",
        **bearer(runner),
    )
    assert started.status_code == 201
    assert started.json()["started_by"] == f"token {runner_row.name}"
    runner_row.refresh_from_db()
    assert runner_row.last_used_at is not None

    tokens.revoke(runner_row.name)
    for token in (runner, "lci_not-a-token", "garbage"):
        gone = anonymous_client.get("/api/scenarios", **bearer(token))
        assert gone.status_code == 401 and "unknown or revoked" in gone.json()["error"]


def test_a_cookies_write_needs_csrf_and_a_json_post_needs_json(postgres):
    runner = as_role("runner", enforce_csrf_checks=True)
    without = runner.post("/api/events", data=event(), content_type="application/json")
    assert without.status_code == 403  # CSRF
    runner.get("/")  # the page sets the CSRF cookie
    csrf = runner.cookies["csrftoken"].value
    with_token = runner.post(
        "/api/events", data=event(), content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert with_token.status_code == 200, with_token.content
    plain = runner.post(
        "/api/scenarios/succeeds/runs", data=b"", content_type="text/plain", HTTP_X_CSRFTOKEN=csrf
    )
    assert plain.status_code == 415


def test_a_fresh_installation_gets_one_admin_with_a_random_password(postgres):
    get_user_model().objects.all().delete()
    name, password = accounts.first_admin()  # type: ignore[misc]
    assert get_user_model().objects.get(username=name).is_superuser
    assert Client().login(username=name, password=password)
    assert accounts.first_admin() is None  # once only
    assert accounts.first_admin() is None


def test_the_admin_shows_what_is_stored_read_only(postgres):
    admin = Client()
    admin.force_login(
        get_user_model().objects.create_superuser(f"root-{uuid.uuid4().hex[:6]}", password="x")
    )
    Event.objects.create(task_key="admin-task", source="api", kind="read", status="RUNNING")
    assert admin.get("/admin/lifecycle/event/").status_code == 200
    assert admin.get("/admin/lifecycle/event/add/").status_code == 403
    assert admin.get("/admin/lifecycle/run/add/").status_code == 403
    assert admin.get("/admin/lifecycle/apitoken/").status_code == 200


async def connect(
    path: str, origin: bytes, cookie: str = "", host: bytes = b"127.0.0.1:8000"
) -> tuple[bool, Any]:
    headers = [(b"origin", origin), (b"host", host)]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    from dashboard.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    await communicator.disconnect()
    return connected, code


async def test_a_websocket_needs_a_reader_from_this_origin(postgres):
    from channels.db import database_sync_to_async

    here = b"http://127.0.0.1:8000"
    # Nobody: refused
    assert (await connect("/ws/feed", here))[0] is False

    # A viewer's session: accepted from this origin, refused from another
    viewer = await database_sync_to_async(as_role)("viewer")
    cookie = f"sessionid={viewer.cookies['sessionid'].value}"
    assert (await connect("/ws/feed", here, cookie))[0] is True
    assert (await connect("/ws/tasks/x", here, cookie))[0] is True
    # Another site, or another port or scheme of this host (cookies are not per port)
    for origin in (
        b"http://evil.example",
        b"http://127.0.0.1:9999",
        b"https://127.0.0.1",
        b"http://127.0.0.1",
        b"null",
    ):
        assert (await connect("/ws/feed", origin, cookie))[0] is False, origin
    assert (await connect("/ws/feed", here, cookie, host=b"127.0.0.1:9999"))[0] is False


def test_an_account_without_a_role_is_told_so_and_can_log_out(postgres):
    name = f"norole-{uuid.uuid4().hex[:6]}"
    get_user_model().objects.create_user(name, password="pw-1234567")
    c = Client()
    assert c.login(username=name, password="pw-1234567")
    page = c.get("/", follow=True)
    assert b"Your account may not open that page." in page.content
    assert c.post("/logout").status_code == 302
    assert "_auth_user_id" not in c.session


def test_every_response_carries_the_policy_early_refusals_too(anonymous_client, postgres):
    for response in (
        anonymous_client.get("/"),  # the redirect to the login
        anonymous_client.get("/api/runs/1"),  # the 401
        anonymous_client.get("/api/runs/1", HTTP_AUTHORIZATION="Bearer nope"),
        anonymous_client.get("/login", HTTP_HOST="evil.example"),  # DisallowedHost's 400
    ):
        assert "script-src 'self'" in response["Content-Security-Policy"], response
        assert response["X-Frame-Options"] == "DENY"


async def test_a_root_path_from_a_client_header_opens_nothing(postgres):
    """Daphne takes a client's Daphne-Root-Path header as the ASGI root_path: /lab/api/...
    then reaches the dashboard's /api/... with request.path under the open /lab/."""
    from asgiref.testing import ApplicationCommunicator

    from dashboard.asgi import application

    for root, path in (("/lab", "/lab/api/scenarios"), ("/static", "/static/api/runs/1")):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": root,
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 5555),
            "server": ("testserver", 80),
        }
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(10)
        await communicator.wait(10)
        assert start["status"] == 401, (root, start)
