"""The lab is not a door (issue 19, item 4): its API is for whoever may start a run and
for the probe; a task's sleep and size are bounded; the worker is owed only so much sleep
at once, and is killed by a redelivery task only so often."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from lifecycle.lab.models import Task
from lifecycle.models import Run
from lifecycle.people import tokens
from lifecycle.runtime.http import LAB_KEY_HEADER, lab_key
from lifecycle.scenarios.probe import _headers
from tests.integration.people import as_role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KEY = "HTTP_" + LAB_KEY_HEADER.upper().replace("-", "_")


@pytest.fixture
def no_enqueue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sleeping tasks are stored but never sent: no worker of another test sleeps them."""
    from lifecycle.lab.actors import run_task

    monkeypatch.setattr(run_task, "send", lambda *args, **kwargs: None)


def create(client: Client, config: dict[str, Any], **headers: str) -> Any:
    return client.post(
        "/lab/api/tasks", data={"config": config}, content_type="application/json", **headers
    )


def test_nobody_without_a_credential_may_create_or_read_lab_tasks(postgres):
    # Given no account, no token, no key
    anonymous = Client()
    # When it posts the task that killed the worker, or reads one
    created = create(anonymous, {"redelivery": True})
    task = Task.objects.create(config={"input": [1]})
    read = anonymous.get(f"/lab/api/tasks/{task.id}")
    # Then both are 401s that say who may, and nothing was created
    for refused in (created, read):
        assert refused.status_code == 401
        assert "whoever may start runs" in refused.json()["error"]
        assert refused["WWW-Authenticate"].startswith("Bearer")
    assert Task.objects.count() == 1


def test_a_wrong_key_or_token_is_401_and_a_viewer_is_403(postgres):
    anonymous = Client()
    assert create(anonymous, {}, **{KEY: "0" * 64}).status_code == 401
    bad = create(anonymous, {}, HTTP_AUTHORIZATION="Bearer lci_not-a-token")
    assert bad.status_code == 401
    _, viewer_token = tokens.create(f"v-{uuid.uuid4().hex[:6]}", "viewer")
    assert create(anonymous, {}, HTTP_AUTHORIZATION=f"Bearer {viewer_token}").status_code == 403
    viewer = as_role("viewer")
    refused = create(viewer, {})
    assert refused.status_code == 403 and "may not start runs" in refused.json()["error"]
    assert Task.objects.count() == 0


def test_a_runner_and_the_probe_may_create_and_read(postgres, rabbitmq):
    _, runner_token = tokens.create(f"r-{uuid.uuid4().hex[:6]}", "runner")
    strict = Client(enforce_csrf_checks=True)  # no cookie authorizes these: no CSRF needed
    for headers in ({"HTTP_AUTHORIZATION": f"Bearer {runner_token}"}, {KEY: lab_key()}):
        created = create(strict, {"input": [1, 2]}, **headers)
        assert created.status_code == 201, created.content
        read = strict.get(f"/lab/api/tasks/{created.json()['id']}", **headers)
        assert read.status_code == 200 and read.json()["config"] == {"input": [1, 2]}


def test_a_runners_session_needs_its_csrf_token(postgres, rabbitmq):
    runner = as_role("runner", enforce_csrf_checks=True)
    without = create(runner, {"input": [1]})
    assert without.status_code == 403 and "CSRF" in without.json()["error"]
    runner.get("/")  # the page sets the CSRF cookie
    csrf = runner.cookies["csrftoken"].value
    with_token = create(runner, {"input": [1]}, HTTP_X_CSRFTOKEN=csrf)
    assert with_token.status_code == 201, with_token.content


def test_the_probe_sends_its_key_to_the_lab_only(postgres, settings):
    settings.LAB_BASE_URL = "http://127.0.0.1:8123"
    run = Run.objects.create(
        scenario="succeeds", expected="COMPLETED", base_url=settings.LAB_BASE_URL
    )
    assert (LAB_KEY_HEADER, lab_key()) in _headers(run, "http://127.0.0.1:8123/lab/api/tasks")
    for elsewhere in (
        "http://127.0.0.1:81234/lab/api/tasks",
        "http://127.0.0.1:8123.evil.example/lab/api/tasks",
        "http://jobs.example/lab/api/tasks",
    ):
        assert LAB_KEY_HEADER not in dict(_headers(run, elsewhere)), elsewhere


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"sleep": 60}, "sleep must be a number of seconds from 0 to 30 (the lab's bound)"),
        ({"sleep": 30.5}, "sleep must be a number of seconds from 0 to 30"),
        ({"sleep": 25, "fail_times": 2}, "sleep * (1 + fail_times), is at most 60 s, not 75"),
        ({"input": list(range(1001))}, "input holds at most 1000 items"),
    ],
)
def test_a_tasks_sleep_and_size_are_bounded(postgres, no_enqueue, config, message):
    created = create(Client(), config, **{KEY: lab_key()})
    assert created.status_code == 400
    assert message in created.json()["error"]
    assert Task.objects.count() == 0


def test_the_worker_is_owed_only_the_budgets_sleep(postgres, no_enqueue, settings):
    # Given unfinished tasks that owe the worker 50 of its 60 s of sleep
    settings.LAB_SLEEP_BUDGET = 60
    Task.objects.create(config={"sleep": 30})
    Task.objects.create(config={"sleep": 10, "fail_times": 1}, status="RUNNING")
    Task.objects.create(config={"sleep": 30}, status="COMPLETED")  # finished: owes nothing
    # When a task asks for 20 s more
    busy = create(Client(), {"sleep": 20}, **{KEY: lab_key()})
    # Then it is a 429 that says what is owed, and tasks that fit still go
    assert busy.status_code == 429
    assert "owes 50 s of sleep" in busy.json()["error"]
    assert 1 <= int(busy["Retry-After"]) <= 20
    assert create(Client(), {"sleep": 10}, **{KEY: lab_key()}).status_code == 201
    assert create(Client(), {"input": [1]}, **{KEY: lab_key()}).status_code == 201
    assert create(Client(), {"sleep": 0.5}, **{KEY: lab_key()}).status_code == 429


def test_eight_long_sleeps_cannot_take_every_worker_thread(postgres, no_enqueue):
    # The attack: eight sleep: 60 tasks took the worker's eight threads for a minute
    answers = [create(Client(), {"sleep": 30}, **{KEY: lab_key()}) for _ in range(8)]
    assert [a.status_code for a in answers] == [201, 201] + [429] * 6


def test_a_redelivery_task_kills_the_worker_only_so_often(postgres, no_enqueue, settings):
    settings.LAB_REDELIVERY_INTERVAL = 5
    Task.objects.create(config={"input": [1], "redelivery": True}, status="COMPLETED")
    again = create(Client(), {"input": [1], "redelivery": True}, **{KEY: lab_key()})
    assert again.status_code == 429
    assert "LAB_REDELIVERY_INTERVAL" in again.json()["error"]
    assert 1 <= int(again["Retry-After"]) <= 5
    assert Task.objects.count() == 1
