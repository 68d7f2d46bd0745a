"""Events over HTTP, for any language: ``POST /api/events`` validates like the ingestor,
stores the good events, answers each bad one with its reason, and never doubles one."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from lifecycle.events import make_message
from lifecycle.models import Event

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def post(client: Any, body: Any, content_type: str = "application/json") -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/api/events", data=data, content_type=content_type)


def read(task: str, status: str = "RUNNING") -> dict[str, Any]:
    return make_message(source="api", kind="read", task=task, status=status, body={"xmin": 7})


def test_one_event_is_stored_as_the_ingestor_would(client: Any, postgres: None) -> None:
    # Given one API read, as a service in another language would send it
    event = read("job-1")
    # When it is posted
    response = post(client, event)
    # Then it is stored once, with its uuid, and a repeat is a duplicate, not an error
    assert response.status_code == 200
    assert response.json() == {"stored": 1, "duplicates": 0, "rejected": []}
    stored = Event.objects.get(task_key="job-1")
    assert (str(stored.uuid), stored.source, stored.kind, stored.status) == (
        event["uuid"],
        "api",
        "read",
        "RUNNING",
    )
    assert stored.body == {"xmin": 7}
    assert post(client, event).json() == {"stored": 0, "duplicates": 1, "rejected": []}
    assert Event.objects.filter(task_key="job-1").count() == 1


def test_good_events_are_stored_and_each_bad_one_gets_its_reason(
    client: Any, postgres: None
) -> None:
    # Given a batch with two good events around three bad ones
    db_event = {**read("job-2"), "source": "db", "kind": "update"}
    no_task = {**read("job-2"), "task": ""}
    nul = {**read("job-2"), "status": "bad\u0000status"}
    batch = [read("job-2", "PENDING"), db_event, no_task, nul, read("job-2", "COMPLETED")]
    # When it is posted
    response = post(client, batch)
    # Then the good ones are stored and the bad ones named by index, with why
    assert response.status_code == 200
    body = response.json()
    assert body["stored"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3]
    assert "unknown source 'db'" in body["rejected"][0]["error"]
    assert "missing field 'task'" in body["rejected"][1]["error"]
    assert "status holds a NUL character" in body["rejected"][2]["error"]
    statuses = list(Event.objects.filter(task_key="job-2").values_list("status", flat=True))
    assert sorted(statuses) == ["COMPLETED", "PENDING"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{nope", "application/json", 400, "not JSON"),
        ([], "application/json", 400, "no event"),
        ([{"schema": 2}], "application/json", 400, "unsupported schema 2"),
        ("{}", "text/plain", 415, "Content-Type: application/json"),
    ],
)
def test_a_request_with_no_good_event_is_a_400_that_says_why(
    client: Any, postgres: None, body: Any, content_type: str, status: int, says: str
) -> None:
    response = post(client, body, content_type)
    assert response.status_code == status
    text = json.dumps(response.json())
    assert says in text
    assert Event.objects.count() == 0


def test_more_than_a_thousand_events_are_refused_whole(client: Any, postgres: None) -> None:
    response = post(client, [read(f"job-{uuid.uuid4()}") for _ in range(1001)])
    assert response.status_code == 413
    assert "at most 1000" in response.json()["error"]
    assert Event.objects.count() == 0


def test_a_cross_site_form_cannot_post_events(client: Any, postgres: None) -> None:
    # Given what a web page elsewhere can send without a preflight: a text/plain POST
    response = client.post(
        "/api/events",
        data=json.dumps(read("job-3")),
        content_type="text/plain",
        HTTP_ORIGIN="http://evil.example",
    )
    # Then it is refused, and nothing is stored
    assert response.status_code == 415
    assert not Event.objects.filter(task_key="job-3").exists()


def test_a_nul_or_a_lone_surrogate_costs_only_its_own_event(client: Any, postgres: None) -> None:
    # Given a batch where every other event carries text PostgreSQL cannot store: a NUL or
    # a lone surrogate (JSON's "\\ud800"), in the key, the status, a body value or a body key
    task = f"hostile-{uuid.uuid4()}"
    hostile = [
        {"task": f"{task}\u0000"},
        {"status": "RUN\u0000NING"},
        {"body": {"note": "a\u0000b"}},
        {"task": "PLACEHOLDER"},
        {"status": "PLACEHOLDER"},
        {"body": {"PLACEHOLDER": 1}},
    ]
    batch = []
    for n, fields in enumerate(hostile):
        batch += [read(task, f"GOOD-{n}"), {**read(task), **fields}]
    text = json.dumps(batch).replace('"PLACEHOLDER"', '"\\ud800"')
    # When it is posted
    response = post(client, text)
    # Then the good events are stored and each bad one is refused alone, by its index,
    # in words of ours: nothing of PostgreSQL's error text (which quotes our SQL)
    assert response.status_code == 200
    body = response.json()
    assert body["stored"] == len(hostile)
    assert [r["index"] for r in body["rejected"]] == list(range(1, 2 * len(hostile), 2))
    reasons = [r["error"] for r in body["rejected"]]
    assert all(("a NUL character" in r) != ("a lone surrogate" in r) for r in reasons), reasons
    assert not any(word in response.content.decode() for word in ("LINE", "::", "psycopg"))
    statuses = Event.objects.filter(task_key=task).values_list("status", flat=True)
    assert sorted(statuses) == [f"GOOD-{n}" for n in range(len(hostile))]


def test_a_lone_hostile_event_is_a_400_that_says_why(client: Any, postgres: None) -> None:
    # Given one event whose key holds a lone surrogate (no good one beside it)
    task = f"hostile-{uuid.uuid4()}"
    text = json.dumps(read(task)).replace(f'"{task}"', '"job-\\udfff"')
    response = post(client, text)
    assert response.status_code == 400
    assert response.json()["rejected"] == [
        {"index": 0, "error": "task holds a lone surrogate (text that is not Unicode)"}
    ]
    assert Event.objects.count() == 0


def test_a_standby_read_keeps_its_server_fields_and_bad_ones_are_refused(
    client: Any, postgres: None
) -> None:
    # Given a read a standby served, beside reads whose server fields are not what they say
    def standby(task: str, **fields: Any) -> dict[str, Any]:
        event = read(task)
        event["body"].update(fields)
        return event

    good = standby("job-r", standby=True, replayed_at="2026-12-03T10:00:00.5+00:00")
    batch = [
        good,
        standby("job-r", standby="yes"),
        standby("job-r", standby=True, replayed_at="yesterday"),
        standby("job-r", standby=True, replayed_at="2026-12-03T10:00:00"),
        standby("job-r", standby=True, replayed_at="2026-12-03T10:00:00+00:00" + " " * 100),
        standby("job-r", standby=True, replayed_at=12),
        standby("job-r", standby=False, replayed_at=None),
    ]

    # When they are posted
    body = post(client, batch).json()

    # Then the good ones are stored as sent, each bad one refused with its reason
    assert body["stored"] == 2
    reasons = {r["index"]: r["error"] for r in body["rejected"]}
    assert "standby must be true, false or null" in reasons[1]
    assert "replayed_at is not an ISO 8601 time" in reasons[2]
    assert "time zone" in reasons[3]
    assert "at most 40 characters" in reasons[4]
    assert "at most 40 characters" in reasons[5]
    stored = Event.objects.get(task_key="job-r", uuid=good["uuid"])
    assert stored.body["standby"] is True
    assert stored.body["replayed_at"] == "2026-12-03T10:00:00.5+00:00"
