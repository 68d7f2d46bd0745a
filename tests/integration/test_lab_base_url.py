"""Where the probe sends a run's requests: to LAB_BASE_URL, never to the server a request's
Host header names (ALLOWED_HOSTS ignores ports, so ``localhost:<any port>`` gets through)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from lifecycle.models import Run
from lifecycle.people import accounts, tokens
from tests.conftest import wait_for
from tests.integration.json_server import JsonHandler, JsonServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class FakeLab(JsonServer):
    """Answers the lab's API as a lab whose every task is COMPLETED; keeps what it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        lab = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                lab.requests.append(("POST", self.path, self.json_body()))
                self.answer(201, {"id": str(uuid.uuid4()), "status": "PENDING"})

            def do_GET(self) -> None:
                lab.requests.append(("GET", self.path, None))
                self.answer(200, {"status": "COMPLETED"})

        super().__init__(Handler)


@pytest.fixture
def configured_lab() -> Iterator[FakeLab]:
    lab = FakeLab()
    yield lab
    lab.close()


@pytest.fixture
def attacker() -> Iterator[FakeLab]:
    """An attacker's server on another port of this machine: a lab all the same."""
    lab = FakeLab()
    yield lab
    lab.close()


def test_a_host_header_does_not_steer_the_probe(
    configured_lab: FakeLab, attacker: FakeLab, settings: Any, postgres: None
) -> None:
    # Given LAB_BASE_URL set, and a server of an attacker's on another port of this machine
    settings.LAB_BASE_URL = configured_lab.url
    hostile = {"HTTP_HOST": f"localhost:{attacker.port}"}
    _, token = tokens.create(f"host-{uuid.uuid4().hex[:6]}", "runner")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}", **hostile)
    name = f"runner-{uuid.uuid4().hex[:6]}"
    page = Client(**hostile)
    assert page.login(username=name, password=accounts.add(name, "runner"))

    # When runs are started, resubmitted and edited, by token and from the pages, each with
    # a Host header that names the attacker's port
    def api_post(path: str) -> int:
        answer = api.post(path, data=b"{}", content_type="application/json")
        assert answer.status_code == 201, answer.content
        return int(answer.json()["id"])

    def page_post(path: str, **form: str) -> int:
        answer = page.post(path, {"token": uuid.uuid4().hex, **form})
        assert answer.status_code == 303, answer.content
        return int(answer["Location"].rsplit("/", 1)[1])

    first = api_post("/api/scenarios/succeeds/runs")
    started = [
        first,
        api_post(f"/api/runs/{first}/resubmit"),
        page_post("/scenarios/succeeds/runs"),
        page_post(f"/runs/{first}/resubmit"),
        page_post(f"/runs/{first}/edit", body='{"config": {"input": [4]}}'),
    ]

    # Then every run went to LAB_BASE_URL, and the attacker's server heard nothing
    runs = wait_for(
        lambda: (
            None
            if Run.objects.filter(pk__in=started, state=Run.State.RUNNING).exists()
            else list(Run.objects.filter(pk__in=started))
        ),
        30,
        0.1,
        "the runs to finish",
    )
    assert attacker.requests == []
    assert {run.base_url for run in runs} == {configured_lab.url}
    assert {run.verdict for run in runs} == {Run.Verdict.PASS}
    submits = [r for r in configured_lab.requests if r[0] == "POST"]
    assert [path for _, path, _ in submits] == ["/lab/api/tasks"] * len(started)
    assert {"config": {"input": [4]}} in [body for _, _, body in submits]
