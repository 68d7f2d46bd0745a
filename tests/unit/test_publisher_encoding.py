"""The publisher thread builds and encodes an ``emit``'s message itself: it must be the
message ``make_message`` builds, encoded byte for byte as ``messages.encode`` does."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle.client import messages
from lifecycle.client.publisher import _build, _encode, _iso

pytestmark = pytest.mark.unit

text = st.text(max_size=40)  # any code point: quotes, controls, U+2028, astral planes
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@given(
    source=text,
    kind=text,
    task=text,
    status=st.none() | text,
    at=st.floats(min_value=0, max_value=4_102_444_800),  # 1970 to 2100
    txid=st.none() | st.integers(min_value=0, max_value=2**63),
    body=st.dictionaries(text, values, max_size=6),
)
def test_an_emitted_message_is_encoded_as_messages_encode_would(
    source: str, kind: str, task: str, status: str | None, at: float, txid: int | None, body: Any
) -> None:
    message, encoded = _build((source, kind, task, status, at, txid, body))
    assert encoded == messages.encode(message)
    assert json.loads(encoded) == {**message, "body": json.loads(json.dumps(body))}
    assert message["schema"] == messages.SCHEMA_VERSION


def test_values_json_cannot_take_are_encoded_as_their_text() -> None:
    # Given a body with a datetime and a set, and a task key that is not a string
    body = {"when": datetime(2026, 1, 2, tzinfo=UTC), "tags": {"a"}}
    message, encoded = _build(("broker", "start", 42, None, time.time(), None, body))
    # Then the encoding is messages.encode's: default=str
    assert encoded == messages.encode(message)
    assert json.loads(encoded)["body"]["when"] == "2026-01-02 00:00:00+00:00"


@given(at=st.floats(min_value=0, max_value=4_102_444_800))
def test_times_are_formatted_as_isoformat_to_the_microsecond(at: float) -> None:
    expected = datetime.fromtimestamp(int(at), UTC).replace(
        microsecond=int((at - int(at)) * 1_000_000)
    )
    assert _iso(at) == expected.isoformat(timespec="microseconds")
    assert datetime.fromisoformat(_iso(at)) == expected


def test_an_emitted_message_gets_a_fresh_uuid_each_time() -> None:
    parts = ("broker", "ack", "t-1", None, time.time(), None, {})
    assert len({_build(parts)[0]["uuid"] for _ in range(1000)}) == 1000


def test_uuids_are_version_4_and_unique_across_forked_processes() -> None:
    # Given a process that made uuids, and children forked from it (each reseeds at fork)
    mine = [messages.new_uuid() for _ in range(1000)]
    children = []
    for _ in range(4):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.write(write, json.dumps([messages.new_uuid() for _ in range(1000)]).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            children.append(json.loads(pipe.read()))
        os.waitpid(pid, 0)
    # Then no uuid is made twice, in any process, and each is a valid version-4 uuid
    every = mine + [u for child in children for u in child]
    assert len(set(every)) == len(every) == 5000
    for text in every[::97]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
    # and the processes' random parts differ (a counter alone would repeat the parent's)
    heads = {child[0][:23] for child in children} | {mine[0][:23]}
    assert len(heads) == 5


def test_events_sharing_one_body_encode_it_once_and_alike() -> None:
    # Given two events of one body (the middleware's start and ack) taken in two rounds
    body = {"message_id": "m-1", "n": [1, 2.5, None], "é": "\u2028"}
    at = time.time()
    first, before = {}, {}  # type: ignore[var-annotated]
    _, start, _ = _encode(("broker", "start", "t-1", None, at, None, body), first, before)
    second: dict[int, Any] = {}
    _, ack, _ = _encode(("broker", "ack", "t-1", None, at, None, body), second, first)
    # Then both carry the body as messages.encode would
    for raw in (start, ack):
        sent = json.loads(raw)
        expected = messages.make_message(source="broker", kind=sent["kind"], task="t-1", body=body)
        expected.update(uuid=sent["uuid"], at=sent["at"])
        assert raw == messages.encode(expected)
    # and another body with the id of a collected one is encoded afresh
    other = {"message_id": "m-2"}
    third: dict[int, Any] = {id(other): (body, "{}")}
    _, raw, _ = _encode(("broker", "ack", "t-2", None, at, None, other), third, {})
    assert json.loads(raw)["body"] == other


@given(
    task=st.integers() | text,
    status=st.none() | text | st.integers(),
    message_id=text | st.integers() | st.binary(max_size=8),
    actor=text,
    queue=text | st.none(),
    attempt=st.integers(min_value=1, max_value=10**9),
    thread=text,
    redelivered=st.none() | st.booleans(),
)
def test_a_body_given_as_its_broker_fields_is_encoded_as_the_body_would_be(
    task: Any,
    status: Any,
    message_id: Any,
    actor: str,
    queue: Any,
    attempt: int,
    thread: str,
    redelivered: bool | None,
) -> None:
    # Given an event whose body the caller gave as its fields (the Dramatiq middleware's
    # start and ack), of plain fields or not (a task key that is a number, a message id that
    # is bytes, a queue that is None: an application's own message class)
    fields = (messages.BROKER_MARK, message_id, actor, queue, attempt, 4321, thread, redelivered)
    at = time.time()
    _, encoded, _ = _encode(("broker", "start", task, status, at, None, fields), {}, {})
    # Then it reaches the wire as the same event with the body itself would
    sent = json.loads(encoded)
    body = messages.broker_body(fields)
    expected, _ = _build(("broker", "start", task, status, at, None, body), sent["uuid"])
    assert encoded == messages.encode(expected)
    assert ("redelivered" in sent["body"]) is (redelivered is not None)


def test_a_body_of_seven_or_eight_values_of_its_own_is_not_taken_for_broker_fields() -> None:
    at = time.time()
    for body in ((1, 2, 3, 4, 5, 6, 7), ("a", 1, 2, 3, 4, 5, 6, 7)):
        _, encoded, _ = _encode(("broker", "start", "t", None, at, None, body), {}, {})
        assert json.loads(encoded)["body"] == list(body)


def test_a_batch_holds_as_many_events_as_its_byte_limit_takes_and_no_more(monkeypatch) -> None:
    from lifecycle.client import publisher as module

    # Given pending events of 100 bytes each, and a batch limit of 10 events' JSON array
    monkeypatch.setattr(module, "MAX_BATCH_BYTES", 2 + 10 * 100 + 9)
    sent: list[tuple[bytes, Any]] = []
    publisher = module.Publisher(url="amqp://guest:guest@127.0.0.1:1/%2F")
    monkeypatch.setattr(
        publisher, "_publish", lambda key, body, uuid, flight: sent.append((body, flight)) or True
    )
    for ticket in range(1, 26):
        event = b'"' + str(ticket).encode().rjust(98, b"x") + b'"'
        publisher._pending.append(("broker.start", event, None, ticket))
    # When they are sent
    while publisher._pending:
        assert publisher._send_batch()
    # Then each batch is a JSON array of whole events within the limit, filled to it
    assert [len(json.loads(body)) for body, _ in sent] == [10, 10, 5]
    assert len(sent[0][0]) == module.MAX_BATCH_BYTES
    assert [flight.size for _, flight in sent] == [1000, 1000, 500]
    assert [item[3] for _, flight in sent for item in flight.items] == list(range(1, 26))
