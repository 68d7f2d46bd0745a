"""An outside attack on the events quota through the other way in: ``POST /api/import``.

``LIFECYCLE_EVENTS_PER_MINUTE`` counted ``POST /api/events`` only. One runner token, its
events quota spent, imported a 49 MB timeline of 150,000 events in 15 s, and again: six
imports at once stored 900,000 events in 105 s (about 500,000 a minute against a quota
of 60,000), took the web process from 200 MB to 2.1 GB (700 MB kept afterwards), and
``GET /login`` waited 20 s meanwhile. Against the real database."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client

from lifecycle.events import make_message
from lifecycle.people import tokens

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def exported(task: str, n: int) -> dict[str, Any]:
    """A timeline as ``GET /api/tasks/<key>/timeline`` gives it, of ``n`` reads."""
    events = []
    for i in range(n):
        message = make_message(
            source="api", kind="read", task=task, status="RUNNING", body={"i": i}
        )
        events.append({**message, "id": i + 1, "received_at": message["at"]})
    return {"task": task, "status": "RUNNING", "expected": None, "findings": [], "events": events}


def test_an_import_counts_against_the_tokens_events_quota(postgres: None, settings: Any) -> None:
    settings.LIFECYCLE_EVENTS_PER_MINUTE = 1000
    _, token = tokens.create(f"imp-{uuid.uuid4().hex[:6]}", "runner")
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    # A token may post 1,000 events a minute: 1,200 at once through /api/events are refused
    events = exported(f"quota-{uuid.uuid4().hex[:8]}", 1200)["events"]
    posted = client.post(
        "/api/events", data=json.dumps(events[:1000]), content_type="application/json", **auth
    )
    assert posted.status_code == 200
    more = client.post(
        "/api/events", data=json.dumps(events[1000:]), content_type="application/json", **auth
    )
    assert more.status_code == 429

    # The same token, its quota spent, imports a timeline of 1,200 events
    response = client.post(
        "/api/import",
        data=json.dumps(exported(f"imp-{uuid.uuid4().hex[:8]}", 1200)),
        content_type="application/json",
        **auth,
    )

    assert response.status_code == 429, (response.status_code, response.content[:200])
    assert int(response["Retry-After"]) > 0


def test_an_import_larger_than_the_quota_takes_the_whole_minute(
    postgres: None, settings: Any
) -> None:
    settings.LIFECYCLE_EVENTS_PER_MINUTE = 1000
    _, token = tokens.create(f"imp-{uuid.uuid4().hex[:6]}", "runner")
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def imported(n: int) -> int:
        return client.post(
            "/api/import",
            data=json.dumps(exported(f"imp-{uuid.uuid4().hex[:8]}", n)),
            content_type="application/json",
            **auth,
        ).status_code

    # A timeline longer than the whole quota is imported, once, on a quiet minute
    assert imported(1500) == 201
    # and a second right after waits for the next minute, however small
    assert imported(10) == 429
