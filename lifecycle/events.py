"""The event schema (version 1): one shape for every source, parsed and validated here.

A message on the exchange, a row of ``lifecycle_event`` and an entry of a timeline's JSON
all carry the same fields; the README documents them. Parsing is pure, so the ingestor's
rules (what is malformed, and why) are tested without a server.
"""

from __future__ import annotations

import json
import json.scanner
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# The wire format is the client's, which publishers import without Django.
from lifecycle.client.messages import SCHEMA_VERSION as SCHEMA_VERSION
from lifecycle.client.messages import encode as encode
from lifecycle.client.messages import make_message as make_message
from lifecycle.client.messages import now as now

MAX_MESSAGE_BYTES = 64 * 1024

# The channel on which the event table's trigger announces each new row's id: the feed and
# the maintainer LISTEN on it. The frozen migration SQL spells it out; a test holds them to it.
NOTIFY_CHANNEL = "lifecycle_events"

# Every source and the kinds it may send. ``db`` events come from the trigger only.
KINDS: dict[str, frozenset[str]] = {
    "db": frozenset({"insert", "update", "delete"}),
    "broker": frozenset({"enqueue", "start", "ack", "fail", "retry", "nack", "skip"}),
    "api": frozenset({"read"}),
    "log": frozenset({"warning", "error", "critical"}),
    # expect: a test states the final status it expects (the pytest plugin's watch()).
    "probe": frozenset({"submit", "read", "verdict", "expect"}),
}
# gap: a publisher tells how many of the task's events of this source it had to drop (its
# buffer was full while RabbitMQ was away, or an event could not be encoded), between which
# times, and why (body.reason). Any ingested source.
GAP = "gap"
for _source in ("broker", "api", "log", "probe"):
    KINDS[_source] = KINDS[_source] | {GAP}
# Sources the ingestor accepts from the exchange (``db`` only comes from the trigger).
MAX_TASK_KEY = 200  # characters of a task key, from any source

INGEST_SOURCES = frozenset({"broker", "api", "log", "probe"})


class MalformedEvent(ValueError):
    """A message that cannot become an event; the text is the reason the dead-letter keeps."""


@dataclass(frozen=True)
class EventRecord:
    """One event as the checker, the timeline and the JSON API see it."""

    id: int
    source: str
    kind: str
    task_key: str
    status: str | None = None
    at: datetime | None = None
    received_at: datetime | None = None
    txid: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    uuid: str | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> EventRecord:
        """A row of ``lifecycle_event`` as every query that reads events selects it:

        ``id, source, kind, task_key, status, at::text, received_at::text, txid, body::text,
        uuid::text``. Times and the body come as text: ``datetime.fromisoformat`` and
        ``json.loads`` are many times faster than psycopg's timestamptz and jsonb loaders.
        """
        return cls(
            id=row[0],
            source=row[1],
            kind=row[2],
            task_key=row[3],
            status=row[4],
            at=_time(row[5]),
            received_at=_time(row[6]),
            txid=row[7],
            body=(json.loads(row[8]) if row[8] else None) or {},
            uuid=row[9],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uuid": self.uuid,
            "task": self.task_key,
            "source": self.source,
            "kind": self.kind,
            "status": self.status,
            "at": self.at.isoformat() if self.at else None,
            "received_at": self.received_at.isoformat() if self.received_at else None,
            "txid": self.txid,
            "body": self.body,
        }


ZERO = timedelta(0)


def _time(text: str | None) -> datetime | None:
    """A timestamptz's text, in UTC as psycopg's own loader would give it."""
    if text is None:
        return None
    at = datetime.fromisoformat(text)
    return at if at.tzinfo is UTC or at.utcoffset() == ZERO else at.astimezone(UTC)


@dataclass(frozen=True)
class IncomingEvent:
    """A validated message from the exchange, ready to insert."""

    uuid: str
    task_key: str
    source: str
    kind: str
    status: str | None
    at: datetime
    txid: int | None
    body: dict[str, Any]

    def as_row(self) -> tuple[Any, ...]:
        """The values of ``sql/ingest.sql``'s insert_row, in its order."""
        body = encode_body(self.body)
        return (
            self.uuid,
            self.task_key,
            self.source,
            self.kind,
            self.status,
            self.at,
            self.txid,
            body,
        )


def clock(at: datetime | None) -> str:
    """HH:MM:SS.mmm in UTC: how events and findings name a time ("" for none)."""
    if at is None:
        return ""
    try:
        at = at.astimezone(UTC)
    except (OverflowError, ValueError):  # a time at the edge of the calendar
        return at.isoformat()
    return f"{at.hour:02d}:{at.minute:02d}:{at.second:02d}.{at.microsecond // 1000:03d}"


def gap_span(record: EventRecord) -> tuple[datetime | None, datetime | None]:
    """When the events a ``gap`` event counts were dropped: its body's first and last times
    (the event's own time when the body cannot tell)."""

    def read(name: str) -> datetime | None:
        try:
            at = datetime.fromisoformat(str(record.body.get(name)))
        except ValueError:
            return record.at
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return at if _plausible(at) else record.at

    return read("first_at"), read("last_at")


# One encoder for every body: json.dumps with options builds a new one at each call.
_encode_body = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_body(body: dict[str, Any]) -> str:
    """A body as the event table stores it."""
    return _encode_body(body)


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedEvent(f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES} limit")


def parse_message(raw: bytes) -> IncomingEvent:
    """Validate one message body; raise MalformedEvent with the reason if it is not an event."""
    check_size(raw)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
    return validate(data)


MAX_BATCH_EVENTS = 1000  # events in one message (a batch), as POST /api/events takes
MAX_BATCH_BYTES = 1024 * 1024


def parse_batch(raw: bytes) -> list[tuple[bytes, IncomingEvent | MalformedEvent]]:
    """Validate a message that may carry several events: a JSON array of schema-1 events
    (a publisher's batch), or one event as before. Each is judged alone: one entry per
    event, its own bytes as it was sent (what a dead letter of it holds) with the event or
    why it is not one. Raise MalformedEvent when the message as a whole is not one or the
    other. (The ingestor takes the same verdicts as rows: ``judge``.)"""
    if not raw.lstrip()[:1] == b"[":
        return [(raw, _judged(raw))]
    text, items, bounds = _split(raw)
    judged: list[tuple[bytes, IncomingEvent | MalformedEvent]] = []
    for n, item in enumerate(items):
        one = _text_bytes(text, bounds[2 * n], bounds[2 * n + 1])
        try:
            check_size(one)
            outcome: IncomingEvent | MalformedEvent = validate(item)
        except Exception as exc:
            outcome = _in_batch(exc, n, len(items))
        judged.append((one, outcome))
    return judged


# The values of sql/ingest.sql's insert_row, in its order, the body as JSON text.
Row = tuple[str, str, str, str, str | None, datetime, int | None, str]


@dataclass(slots=True)
class Judged:
    """A message's events as the ingestor takes them (``judge``): ``rows``, the good ones
    ready to insert, in their order; ``refused``, each bad one's place among the message's
    ``count`` events and why. ``raw(place)`` is an event's own bytes, as it was sent: made
    only for the few that are dead-lettered."""

    rows: list[Row]
    refused: list[tuple[int, MalformedEvent]]
    count: int
    _raw: bytes
    _text: str = ""
    _bounds: list[int] | None = None  # start and end of each event's text; None: one event

    def raw(self, place: int) -> bytes:
        if self._bounds is None:
            return self._raw
        return _text_bytes(self._text, self._bounds[2 * place], self._bounds[2 * place + 1])

    def place(self, row: int) -> int:
        """The place in the message of the event that is ``rows[row]``."""
        for refused, _ in self.refused:  # few, in order
            if refused > row:
                break
            row += 1
        return row


def judge(raw: bytes) -> Judged:
    """``parse_batch``'s verdicts, the good events as rows to insert: the ingestor's hot
    path, one dict (json's) and one tuple per event. Raise MalformedEvent as it does."""
    if not raw.lstrip()[:1] == b"[":
        try:
            check_size(raw)
            try:
                data = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MalformedEvent(f"not JSON: {exc}") from None
            return Judged([_checked_row(data)], [], 1, raw)
        except MalformedEvent as exc:
            return Judged([], [(0, exc)], 1, raw)
        except Exception as exc:  # e.g. RecursionError on deeply nested JSON
            return Judged(
                [], [(0, MalformedEvent(f"cannot parse: {type(exc).__name__}: {exc}"))], 1, raw
            )
    text, items, bounds = _split(raw)
    rows: list[Row] = []
    refused: list[tuple[int, MalformedEvent]] = []
    for n, item in enumerate(items):
        try:
            # No event of fewer characters can be over the limit in bytes (4 at most each).
            if bounds[2 * n + 1] - bounds[2 * n] > MAX_MESSAGE_BYTES // 4:
                check_size(_text_bytes(text, bounds[2 * n], bounds[2 * n + 1]))
            rows.append(_checked_row(item))
        except Exception as exc:
            refused.append((n, _in_batch(exc, n, len(items))))
    return Judged(rows, refused, len(items), raw, text, bounds)


def _in_batch(exc: Exception, n: int, count: int) -> MalformedEvent:
    if isinstance(exc, MalformedEvent):
        return MalformedEvent(f"event {n} of a batch of {count}: {exc}")
    # e.g. RecursionError on deeply nested JSON
    return MalformedEvent(f"event {n} of a batch: {type(exc).__name__}: {exc}")


# json.loads' own scanner, to read one value at a time (typeshed types its argument oddly)
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _space(text: str, at: int) -> int:
    """Where the JSON whitespace from ``at`` ends."""
    found = _WHITESPACE.match(text, at)
    return found.end() if found else at


def _split(raw: bytes) -> tuple[str, list[Any], list[int]]:
    """A batch's events decoded, and where each one's text starts and ends: read with json's
    own scanner one value at a time, refusing what ``json.loads`` refuses, so that an event
    is never encoded again to know its bytes."""
    if len(raw) > MAX_BATCH_BYTES:
        raise MalformedEvent(f"a batch of {len(raw)} bytes, over the {MAX_BATCH_BYTES} limit")
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
    scan, space = _SCAN, _space
    items: list[Any] = []
    bounds: list[int] = []
    i = space(text, 0)
    if text[i : i + 1] != "[":
        raise _not_json("Expecting value", text, i)
    i = space(text, i + 1)
    if text[i : i + 1] != "]":
        while True:
            try:
                item, end = scan(text, i)
            except StopIteration as exc:
                raise _not_json("Expecting value", text, exc.value) from None
            except json.JSONDecodeError as exc:
                raise MalformedEvent(f"not JSON: {exc}") from None
            items.append(item)
            bounds += (i, end)
            i = end if text[end : end + 1] in (",", "]") else space(text, end)
            if text[i : i + 1] == ",":
                i = space(text, i + 1)
            elif text[i : i + 1] == "]":
                break
            else:
                raise _not_json("Expecting ',' delimiter", text, i)
    i = space(text, i + 1)
    if i != len(text):
        raise _not_json("Extra data", text, i)
    if not items:
        raise MalformedEvent("an empty batch")
    if len(items) > MAX_BATCH_EVENTS:
        raise MalformedEvent(f"a batch of {len(items)} events, over {MAX_BATCH_EVENTS}")
    return text, items, bounds


def _not_json(what: str, text: str, at: int) -> MalformedEvent:
    return MalformedEvent(f"not JSON: {json.JSONDecodeError(what, text, at)}")


def _text_bytes(text: str, start: int, end: int) -> bytes:
    return text[start:end].encode("utf-8", "surrogatepass")


def _judged(raw: bytes) -> IncomingEvent | MalformedEvent:
    try:
        return parse_message(raw)
    except MalformedEvent as exc:
        return exc
    except Exception as exc:  # e.g. RecursionError on deeply nested JSON
        return MalformedEvent(f"cannot parse: {type(exc).__name__}: {exc}")


def _check_gap(body: dict[str, Any]) -> None:
    dropped = body.get("dropped")
    if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 1:
        raise MalformedEvent("a gap's body.dropped must be a positive integer")
    for name in ("first_at", "last_at"):
        try:
            at = datetime.fromisoformat(str(body.get(name)))
        except ValueError:
            raise MalformedEvent(f"a gap's body.{name} must be an ISO 8601 time") from None
        if at.tzinfo is None or not _plausible(at):
            raise MalformedEvent(
                f"a gap's body.{name} must carry a time zone and be within "
                f"{EARLIEST.year}-{LATEST.year - 1}"
            )


# Times an event may carry: any clock's mistake within these, never an overflow in the
# arithmetic that places and compares events.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _plausible(at: datetime) -> bool:
    try:
        return EARLIEST <= at < LATEST
    except (OverflowError, ValueError):
        return False


def validate(data: Any, sources: frozenset[str] = INGEST_SOURCES) -> IncomingEvent:
    """Validate one decoded message (a JSON value); raise MalformedEvent with the reason.
    ``sources``: the ones accepted (an import also takes ``db``)."""
    event = IncomingEvent(*_checked(data, sources))
    _check_body_text(encode_body(event.body))
    return event


def unstorable(text: str) -> str | None:
    """Why PostgreSQL could not store this text, or None: a NUL character (no text column
    holds one), or a lone surrogate (UTF-8 cannot encode one; JSON's ``\\ud800`` makes
    one, and so does a message's bytes decoded as json does, with ``surrogatepass``)."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (text that is not Unicode)"
    return None


# A NUL in a body's JSON text: ``\u0000`` after an even number of backslashes (a string
# that holds a backslash then "u0000" is encoded ``\\u0000``). jsonb refuses it.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _check_body_text(text: str) -> None:
    """Refuse a body whose JSON text (``encode_body``'s) the event table could not store."""
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise MalformedEvent("body holds a NUL character")
    if not text.isascii() and unstorable(text):
        raise MalformedEvent("body holds a lone surrogate (text that is not Unicode)")


def _checked_row(data: Any) -> Row:
    """``validate(data).as_row()``, without the IncomingEvent."""
    *fields, body = _checked(data, INGEST_SOURCES)
    text = _encode_parsed(body)
    _check_body_text(text)
    return (*fields, text)


def _parsed_encoder() -> Callable[[Any], str]:
    """``encode_body`` for a value json parsed, which cannot hold a cycle: the C encoder
    that each ``encode_body`` call builds, built once and without the check for cycles
    (together a third of the ingestor's time per event, before)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _encode_body
    encoder = make(None, None, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encoder(value, 0))


_encode_parsed = _parsed_encoder()


# What uuid.UUID(...) would give back unchanged: most uuids, checked without making one.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _checked(data: Any, sources: frozenset[str]) -> tuple[Any, ...]:
    """An event's fields in IncomingEvent's order, or MalformedEvent with the reason."""
    if not isinstance(data, dict):
        raise MalformedEvent("not a JSON object")
    if type(data.get("schema")) is not int or data["schema"] != SCHEMA_VERSION:  # not true, 1.0
        raise MalformedEvent(
            f"unsupported schema {data.get('schema')!r}, expected {SCHEMA_VERSION}"
        )
    for name in ("uuid", "task", "source", "kind", "at"):
        if not data.get(name):
            raise MalformedEvent(f"missing field {name!r}")
    source, kind = data["source"], data["kind"]
    if source not in sources:
        raise MalformedEvent(f"unknown source {source!r}")
    if kind not in KINDS[source]:
        raise MalformedEvent(f"unknown kind {kind!r} for source {source!r}")
    event_uuid = data["uuid"]
    if type(event_uuid) is not str or not _CANONICAL_UUID.fullmatch(event_uuid):
        try:
            event_uuid = str(uuid.UUID(str(data["uuid"])))
        except ValueError:
            raise MalformedEvent(f"uuid {data['uuid']!r} is not a UUID") from None
    task = data["task"]
    if not isinstance(task, str) or len(task) > MAX_TASK_KEY:
        raise MalformedEvent(f"task must be a string of at most {MAX_TASK_KEY} characters")
    if problem := unstorable(task):
        raise MalformedEvent(f"task holds {problem}")
    try:
        at = datetime.fromisoformat(str(data["at"]))
    except ValueError:
        raise MalformedEvent(f"at {data['at']!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise MalformedEvent("at must carry a time zone")
    if not _plausible(at):
        raise MalformedEvent(f"at {data['at']!r} is outside {EARLIEST.year}-{LATEST.year - 1}")
    status = data.get("status")
    if status is not None and (not isinstance(status, str) or len(status) > 64):
        raise MalformedEvent("status must be null or a string of at most 64 characters")
    if status is not None and (problem := unstorable(status)):
        raise MalformedEvent(f"status holds {problem}")
    txid = data.get("txid")
    if txid is not None and (not isinstance(txid, int) or isinstance(txid, bool) or txid < 0):
        raise MalformedEvent("txid must be null or a non-negative integer")
    body = data.get("body", {})
    if not isinstance(body, dict):
        raise MalformedEvent("body must be a JSON object")
    if kind == GAP:
        _check_gap(body)
    if "standby" in body or "replayed_at" in body:
        _check_server(body)
    if "cached" in body and not isinstance(body["cached"], bool):
        # A read's ``cached`` is true or false; anything else says nothing, and is not kept,
        # so that whatever reads it may trust ``is True``. The read itself stands.
        body = {name: value for name, value in body.items() if name != "cached"}
    return event_uuid, task, source, kind, status, at, txid, body


MAX_MESSAGE_ID = 200  # characters of a message id compared or keyed on
MAX_TIME_TEXT = 40  # characters of an ISO 8601 time in a body ("2024-05-01T12:00:00.123456+00:00")


def _check_server(body: dict[str, Any]) -> None:
    """A read's ``standby`` (true, false or null) and ``replayed_at`` (null, or an ISO 8601
    time with a zone in the plausible years): the checker compares them with commits."""
    standby = body.get("standby")
    if standby is not None and not isinstance(standby, bool):
        raise MalformedEvent("body.standby must be true, false or null")
    replayed = body.get("replayed_at")
    if replayed is None:
        return
    if not isinstance(replayed, str) or len(replayed) > MAX_TIME_TEXT:
        raise MalformedEvent(
            f"body.replayed_at must be null or an ISO 8601 time of at most {MAX_TIME_TEXT} "
            "characters"
        )
    try:
        at = datetime.fromisoformat(replayed)
    except ValueError:
        raise MalformedEvent("body.replayed_at is not an ISO 8601 time") from None
    if at.tzinfo is None or not _plausible(at):
        raise MalformedEvent(
            f"body.replayed_at must carry a time zone and fall in {EARLIEST.year}-{LATEST.year - 1}"
        )


def attempt_of(e: EventRecord) -> tuple[str, int | str] | None:
    """The Dramatiq attempt an event names, ``(message id, attempt number)``: a broker
    step's, or a log record's or read's that the client tagged with its attempt. None when
    it names none, or names it with values no client sends (an object, a list, a bool, a
    number that is not whole); a missing (or null) attempt number is the first attempt, and one sent
    as text is compared as text (as its digits' number when it is one).

    One rule for the checker, the timeline and the trace, so an event is tied to the same
    attempt everywhere, and nothing posted from outside can make it unhashable or slow.
    """
    message = e.body.get("message_id")
    if isinstance(message, bool) or not isinstance(message, str | int):
        return None
    attempt = e.body.get("attempt")
    if attempt is None:
        attempt = 1  # not said: the first
    if isinstance(attempt, str):
        digits = attempt.isascii() and attempt.isdigit() and len(attempt) < 10
        attempt = int(attempt) if digits else attempt[:MAX_MESSAGE_ID]
    elif isinstance(attempt, bool) or not isinstance(attempt, int):
        return None
    return str(message)[:MAX_MESSAGE_ID], attempt
