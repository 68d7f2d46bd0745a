"""Events per token a minute on ``POST /api/events`` (LIFECYCLE_EVENTS_PER_MINUTE): past
it, 429 with Retry-After and nothing of the request stored; each token its own quota;
a sliding minute; counted in PostgreSQL, so concurrent processes cannot both take the
last room. Against the real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from lifecycle.events import make_message
from lifecycle.models import Event, EventQuota
from lifecycle.people import quotas, tokens
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration]

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)  # a minute's start


def reads(task: str, n: int) -> list[dict[str, Any]]:
    return [
        make_message(source="api", kind="read", task=task, status="RUNNING", body={"i": i})
        for i in range(n)
    ]


def post(client: Client, token: str, body: Any) -> Any:
    return client.post(
        "/api/events",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.mark.django_db
def test_a_token_past_its_quota_is_refused_whole_with_retry_after_and_others_go_on(
    postgres: None, settings: Any
) -> None:
    settings.LIFECYCLE_EVENTS_PER_MINUTE = 1500
    _, first = tokens.create(f"q-{uuid.uuid4().hex[:6]}", "runner")
    _, second = tokens.create(f"q-{uuid.uuid4().hex[:6]}", "runner")
    client = Client()
    task = f"quota-{uuid.uuid4().hex[:8]}"
    # Given a token that posted 1,000 events this minute
    assert post(client, first, reads(task, 1000)).status_code == 200
    # When it posts 600 more: refused whole, saying why and when to come back (600, not
    # 501: the minute slides, and a minute that began meanwhile lets up to 10 % more by)
    response = post(client, first, reads(task, 600))
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 120
    message = response.json()["error"]
    assert "1,500 events a minute" in message and "nothing of this request was stored" in message
    assert Event.objects.filter(task_key=task).count() == 1000
    # And 500 still fit
    assert post(client, first, reads(task, 500)).status_code == 200
    assert post(client, first, reads(task, 100)).status_code == 429
    # Another token has its own quota
    assert post(client, second, reads(task, 1000)).status_code == 200
    assert Event.objects.filter(task_key=task).count() == 2500


@pytest.mark.django_db
def test_the_minute_slides_and_each_holder_keeps_two_rows_at_most(
    postgres: None, settings: Any
) -> None:
    settings.LIFECYCLE_EVENTS_PER_MINUTE = 1000
    holder = f"token slide-{uuid.uuid4().hex[:6]}"
    # 1,000 at the start of a minute: the quota is full
    assert quotas.take(holder, 1000, now=T0) is None
    refusal = quotas.take(holder, 1, now=T0 + timedelta(seconds=10))
    assert refusal is not None
    # Past it, into the next minute, until the last one's count has slid out enough:
    # at 10 s, 1 more fits only once 1,000 * (1 - f) + 1 <= 1,000, at the next minute's
    # first second and a bit
    assert refusal.retry_after == 51
    # Half-way through the next minute, half of the last minute's count still counts
    half = T0 + timedelta(seconds=90)
    assert quotas.take(holder, 500, now=half) is None
    late = quotas.take(holder, 10, now=half)
    # until 10 more of the last minute's 1,000 slid out: 0.6 s, said as 1
    assert late is not None and late.retry_after == 1
    assert quotas.take(holder, 10, now=half + timedelta(seconds=late.retry_after)) is None
    # Three minutes on, only this minute's and the last one's rows are kept
    for minute in range(2, 6):
        assert quotas.take(holder, 1, now=T0 + timedelta(minutes=minute)) is None
    assert EventQuota.objects.filter(holder=holder).count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_cannot_both_take_the_last_room(postgres: None, settings: Any) -> None:
    settings.LIFECYCLE_EVENTS_PER_MINUTE = 1000
    holder = f"token race-{uuid.uuid4().hex[:6]}"
    now = T0 + timedelta(minutes=30)
    results: list[bool] = []
    gate = threading.Barrier(20)

    def take() -> None:
        try:
            gate.wait()
            results.append(quotas.take(holder, 100, now=now) is None)
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Twenty threads, each on its own connection, ask for 100 at once: exactly ten get it
    assert sorted(results) == [False] * 10 + [True] * 10
    assert EventQuota.objects.get(holder=holder).events == 1000
    EventQuota.objects.filter(holder=holder).delete()


@pytest.mark.django_db
def test_zero_means_no_quota(postgres: None, settings: Any) -> None:
    settings.LIFECYCLE_EVENTS_PER_MINUTE = 0
    assert all(quotas.take("token free", 1000, now=T0) is None for _ in range(5))
    assert not EventQuota.objects.filter(holder="token free").exists()


@pytest.mark.parametrize("value", ["999", "1", "-1", "lots", "1e5"])
def test_a_bad_quota_stops_start_up_saying_why(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "LIFECYCLE_EVENTS_PER_MINUTE": value,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "LIFECYCLE_EVENTS_PER_MINUTE" in done.stderr
