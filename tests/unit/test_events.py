"""The event schema's parser: what the ingestor stores and what it dead-letters, and why."""

from __future__ import annotations

import json
import re
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

import pytest

from lifecycle import events
from lifecycle.events import MalformedEvent, encode, make_message, parse_message, validate

pytestmark = pytest.mark.unit


# What a good message says, as the sender gives it and as the parsed event holds it
SAID: dict[str, Any] = {
    "source": "broker",
    "kind": "start",
    "status": "RUNNING",
    "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    "txid": 42,
    "body": {"attempt": 1},
}


def good(**changes: object) -> dict[str, object]:
    message = make_message(task="task-1", **deepcopy(SAID))
    message.update(changes)
    return message


def rejected(raw: bytes) -> str:
    with pytest.raises(MalformedEvent) as excinfo:
        parse_message(raw)
    return str(excinfo.value)


def test_a_good_message_becomes_an_event() -> None:
    message = good()

    event = parse_message(encode(message))

    assert event == events.IncomingEvent(uuid=str(message["uuid"]), task_key="task-1", **SAID)


@pytest.mark.parametrize("source", sorted(events.INGEST_SOURCES))
def test_every_kind_of_every_ingested_source_is_accepted(source: str) -> None:
    gap = {
        "dropped": 1,
        "first_at": "2026-12-02T18:00:00+00:00",
        "last_at": "2026-12-02T18:00:00+00:00",
    }
    for kind in events.KINDS[source]:
        body = gap if kind == events.GAP else {}
        assert parse_message(encode(good(source=source, kind=kind, body=body))).kind == kind


def test_optional_fields_may_be_null_or_absent() -> None:
    message = good(status=None, txid=None)
    del message["body"]

    event = parse_message(encode(message))

    assert (event.status, event.txid, event.body) == (None, None, {})


def test_not_json_is_rejected() -> None:
    assert rejected(b"{not json").startswith("not JSON")
    assert rejected(b"\xff\xfe").startswith("not JSON")


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_a_json_value_that_is_not_an_object_is_rejected(raw: bytes) -> None:
    assert rejected(raw) == "not a JSON object"


@pytest.mark.parametrize("name", ["uuid", "task", "source", "kind", "at"])
def test_each_required_field_is_required(name: str) -> None:
    missing = good()
    del missing[name]
    empty = good(**{name: ""})

    assert rejected(encode(missing)) == f"missing field {name!r}"
    assert rejected(encode(empty)) == f"missing field {name!r}"


@pytest.mark.parametrize("schema", [None, 0, 2, "1", True, 1.0])
def test_an_unknown_schema_version_is_rejected(schema: object) -> None:
    message = good(schema=schema)
    if schema is None:
        del message["schema"]
    assert rejected(encode(message)).startswith("unsupported schema")


@pytest.mark.parametrize("source", ["db", "cron", "BROKER"])
def test_an_unknown_source_is_rejected(source: str) -> None:
    # ``db`` events come from the trigger only; the exchange may not forge them.
    assert rejected(encode(good(source=source))) == f"unknown source {source!r}"


def test_an_unknown_kind_is_rejected() -> None:
    assert rejected(encode(good(kind="explode"))) == "unknown kind 'explode' for source 'broker'"
    # A kind of another source is still unknown for this one.
    assert rejected(encode(good(source="api", kind="ack"))) == "unknown kind 'ack' for source 'api'"


def test_a_message_over_the_size_limit_is_rejected_before_parsing() -> None:
    raw = encode(good(body={"pad": "x" * events.MAX_MESSAGE_BYTES}))

    assert rejected(raw) == (
        f"message is {len(raw)} bytes, over the {events.MAX_MESSAGE_BYTES} limit"
    )
    assert parse_message(encode(good(body={"pad": "x" * 60_000}))).body["pad"]


@pytest.mark.parametrize("value", ["not-a-uuid", "1234", 12345])
def test_a_bad_uuid_is_rejected(value: object) -> None:
    assert rejected(encode(good(uuid=value))) == f"uuid {value!r} is not a UUID"


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00+00:00", 1700000000])
def test_a_bad_time_is_rejected(value: object) -> None:
    assert rejected(encode(good(at=value))) == f"at {value!r} is not an ISO 8601 time"


def test_a_time_without_zone_is_rejected() -> None:
    assert rejected(encode(good(at="2026-01-02T03:04:05"))) == "at must carry a time zone"


@pytest.mark.parametrize("value", [-1, "42", 4.2, True])
def test_a_bad_txid_is_rejected(value: object) -> None:
    assert rejected(encode(good(txid=value))) == "txid must be null or a non-negative integer"


@pytest.mark.parametrize("value", [7, "x" * 201])
def test_a_bad_task_is_rejected(value: object) -> None:
    assert rejected(encode(good(task=value))) == "task must be a string of at most 200 characters"


@pytest.mark.parametrize("value", [3, "S" * 65])
def test_a_bad_status_is_rejected(value: object) -> None:
    assert rejected(encode(good(status=value))).startswith("status must be null or a string")


@pytest.mark.parametrize("value", [[1], "text", 3])
def test_a_body_that_is_not_an_object_is_rejected(value: object) -> None:
    assert rejected(json.dumps(good(body=value)).encode()) == "body must be a JSON object"


NUL = "a NUL character"
SURROGATE = "a lone surrogate (text that is not Unicode)"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"task": "job\x00"}, f"task holds {NUL}"),
        ({"task": "job\ud800"}, f"task holds {SURROGATE}"),
        ({"status": "RUN\x00"}, f"status holds {NUL}"),
        ({"status": "\udfffRUN"}, f"status holds {SURROGATE}"),
        ({"body": {"note": "a\x00b"}}, f"body holds {NUL}"),
        ({"body": {"a\x00": 1}}, f"body holds {NUL}"),
        ({"body": {"deep": [{"x": "\\\x00"}]}}, f"body holds {NUL}"),
        ({"body": {"note": "\ud800"}}, f"body holds {SURROGATE}"),
        ({"body": {"\udc80": 1}}, f"body holds {SURROGATE}"),
    ],
)
def test_text_postgresql_cannot_store_is_refused_at_the_schema(
    changes: dict[str, object], reason: str
) -> None:
    # The same verdict for the API and imports (validate), a message and a batch's event
    assert rejected(encode(good(**changes))) == reason
    with pytest.raises(MalformedEvent, match=re.escape(reason)):
        validate(good(**changes))
    judged = events.judge(json.dumps([good(), good(**changes)]).encode())
    assert (len(judged.rows), [str(r) for _, r in judged.refused]) == (
        1,
        [f"event 1 of a batch of 2: {reason}"],
    )


def test_a_backslash_then_u0000_is_text_not_a_nul() -> None:
    event = validate(good(body={"path": "C:\\u0000", "twice": "\\\\u0000"}))
    assert event.body == {"path": "C:\\u0000", "twice": "\\\\u0000"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"first_at": "2026-12-02T18:00:00+00:00", "last_at": "2026-12-02T18:00:01+00:00"},
            "body.dropped must be a positive integer",
        ),
        (
            {"dropped": 0, "first_at": "2026-12-02T18:00:00+00:00", "last_at": "x"},
            "body.dropped must be a positive integer",
        ),
        (
            {"dropped": 3, "first_at": "yesterday", "last_at": "2026-12-02T18:00:01+00:00"},
            "body.first_at must be an ISO 8601 time",
        ),
    ],
)
def test_a_gap_must_say_how_many_events_and_when(body: dict, reason: str) -> None:
    message = make_message(source="broker", kind="gap", task="t1", body=body)
    with pytest.raises(MalformedEvent, match=reason):
        validate(message)


def test_a_gap_from_any_ingested_source_is_accepted() -> None:
    body = {
        "dropped": 2,
        "first_at": "2026-12-02T18:00:00+00:00",
        "last_at": "2026-12-02T18:00:01+00:00",
    }
    for source in ("broker", "api", "log", "probe"):
        assert validate(make_message(source=source, kind="gap", task="t", body=body)).kind == "gap"


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "1900-01-01T00:00:00+00:00"]
)
def test_a_time_outside_the_plausible_calendar_is_refused(at: str) -> None:
    with pytest.raises(MalformedEvent, match="is outside 1970-8999"):
        validate({**make_message(source="api", kind="read", task="t"), "at": at})
    gap = {"dropped": 1, "first_at": at, "last_at": "2026-12-02T18:00:00+00:00"}
    with pytest.raises(MalformedEvent, match="body.first_at must carry a time zone and be within"):
        validate(make_message(source="broker", kind="gap", task="t", body=gap))


def test_a_stored_time_at_the_edge_of_the_calendar_still_reads_as_a_clock() -> None:
    from datetime import timedelta, timezone

    edge = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    assert events.clock(edge).startswith("0001-01-01")


# -- a publisher's batch: one message, a JSON array of events ------------------------------


def test_a_batch_is_judged_event_by_event() -> None:
    ok, unknown, second = good(), good(kind="explode"), good(task="task-2")
    judged = events.parse_batch(json.dumps([ok, unknown, 7, second]).encode())
    # Each event with its own bytes as it was sent, for a dead letter of it alone
    sent = [json.dumps(event).encode() for event in (ok, unknown, 7, second)]
    assert [raw for raw, _ in judged] == sent
    outcomes = [outcome for _, outcome in judged]
    assert [o.task_key if isinstance(o, events.IncomingEvent) else None for o in outcomes] == [
        "task-1",
        None,
        None,
        "task-2",
    ]
    assert str(outcomes[1]) == "event 1 of a batch of 4: unknown kind 'explode' for source 'broker'"
    assert str(outcomes[2]) == "event 2 of a batch of 4: not a JSON object"


def test_a_single_event_message_is_a_batch_of_one() -> None:
    raw = encode(good())
    ((same, event),) = events.parse_batch(raw)
    assert same == raw and isinstance(event, events.IncomingEvent)
    ((_, refused),) = events.parse_batch(b"{not json")
    assert isinstance(refused, MalformedEvent) and str(refused).startswith("not JSON")


def test_the_ingestor_takes_a_batch_as_rows_with_the_same_verdicts() -> None:
    # Given a batch as a person might write it: spaces and new lines, text that is not
    # ASCII, a bad event among good ones
    ok, unknown, second = good(body={"note": "café ☕"}), good(kind="explode"), good(n=2)
    raw = "[\n  " + ",\n  ".join(json.dumps(e, ensure_ascii=False) for e in (ok, unknown, second))
    raw = (raw + "\n]\n").encode()

    # When the ingestor judges it
    judged = events.judge(raw)

    # Then its rows are the good events as parse_batch makes them, in their order
    expected = [
        e.as_row() for _, e in events.parse_batch(raw) if isinstance(e, events.IncomingEvent)
    ]
    assert judged.rows == expected and len(expected) == 2
    assert judged.rows[0][-1] == '{"note":"café ☕"}'
    # and the bad one is refused alone, with its place, its reason and its bytes as sent
    assert judged.count == 3
    assert [(place, str(why)) for place, why in judged.refused] == [
        (1, "event 1 of a batch of 3: unknown kind 'explode' for source 'broker'")
    ]
    assert judged.raw(1) == json.dumps(unknown, ensure_ascii=False).encode()
    assert [judged.place(row) for row in range(2)] == [0, 2]


def test_the_ingestor_takes_a_single_event_message_as_a_batch_of_one() -> None:
    raw = encode(good())
    judged = events.judge(raw)
    assert judged.rows == [parse_message(raw).as_row()] and judged.raw(0) == raw
    refused = events.judge(b"{not json")
    assert refused.rows == [] and str(refused.refused[0][1]).startswith("not JSON")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[]", "an empty batch"),
        (b" [ \n ] ", "an empty batch"),
        (b"[1,", "not JSON"),
        (b"[1,]", "not JSON: Expecting value"),
        (b"[1 2]", "not JSON: Expecting ',' delimiter"),
        (b"[1] 2", "not JSON: Extra data"),
        (b'[{"a": }]', "not JSON: Expecting value"),
        (b"[\xff]", "not JSON"),
        (json.dumps([good()] * 1001).encode(), "a batch of 1001 events, over 1000"),
        (b"[" + b" " * (1024 * 1024) + b"1]", "over the 1048576 limit"),
    ],
)
def test_a_batch_that_is_not_one_is_refused_whole(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        events.parse_batch(raw)
    with pytest.raises(MalformedEvent, match=reason):
        events.judge(raw)


def test_an_event_of_a_batch_keeps_the_one_event_size_limit() -> None:
    big = good(body={"pad": "x" * 70_000})
    ((_, refused),) = events.parse_batch(json.dumps([big]).encode())
    assert "over the 65536 limit" in str(refused)
    # counted in bytes, as sent: 22,000 characters of three bytes each are over it
    wide = json.dumps(good(body={"pad": "☕" * 22_000}), ensure_ascii=False).encode()
    ((_, why),) = events.judge(b"[" + wide + b"]").refused
    assert (
        str(why) == f"event 0 of a batch of 1: message is {len(wide)} bytes, over the 65536 limit"
    )
