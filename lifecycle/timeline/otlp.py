"""A task's timeline as an OpenTelemetry trace, in OTLP/JSON (pure), so it opens in Jaeger.

One trace per task (its id derived from the task key, so exporting again gives the same
trace): a root span over the whole history, a child span per attempt (a broker ``start``
to the ``ack``, ``fail``, ``nack`` or ``skip`` of the same message and attempt, or to the
history's end), and each event as a span event: on its attempt's span when it is that
attempt's (a broker step; a log record or read that names the attempt; a log record that
names none, of the same process in its time), else on the root. Findings are span events
on the root named ``finding.<kind>``. Times are the events' own, at their source.

The shape is OTLP's JSON encoding of ``ExportTraceServiceRequest`` (integers of 64 bits
as strings, ids as hex), which Jaeger reads (``jaeger`` UI: *Upload*, or POST to a
collector's ``/v1/traces``).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import tempfile
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord, attempt_of
from lifecycle.history import ATTEMPT_ENDS, attempts
from lifecycle.timeline.layout import EventView

SERVICE = "lifecycle-inspector"
MAX_BODY = 2000  # characters of an event's body kept in its attribute
STATUS_ERROR = 2  # OTLP's STATUS_CODE_ERROR
KIND_INTERNAL = 1
KIND_CONSUMER = 5


def _id(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _nanos(at: datetime | None) -> str:
    return str(round(at.timestamp() * 1_000_000_000)) if at is not None else "0"


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _attributes(pairs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _value(v)} for key, v in pairs.items() if v is not None]


def _span_event(view: EventView) -> dict[str, Any]:
    r = view.record
    body = json.dumps(r.body, default=str, sort_keys=True)
    return {
        "timeUnixNano": _nanos(r.at),
        "name": f"{r.source}.{r.kind}",
        "attributes": _attributes(
            {
                "lifecycle.event.id": r.id,
                "lifecycle.event.uuid": r.uuid,
                "lifecycle.nodes.status": r.status,
                "lifecycle.summary": view.summary,
                "lifecycle.txid": r.txid,
                "lifecycle.received_at": r.received_at.isoformat() if r.received_at else None,
                "lifecycle.check.findings": ", ".join(view.findings) or None,
                "lifecycle.body": body[:MAX_BODY],
            }
        ),
    }


SPANS_LOOKED_AT = 64  # attempts started before an untagged record that may hold it


def _inside(span: dict[str, Any], r: EventRecord) -> bool:
    s, until = span["start"], span["until"]
    return s.at is not None and until is not None and r.at is not None and s.at <= r.at <= until


def _attempt_name(start: EventRecord, n: int) -> str:
    actor = start.body.get("actor") or ""
    return f"attempt {start.body.get('attempt', n)} {actor}".strip()


class Attempts:
    """The attempt spans of a history, from its broker steps (``attempts``), and which
    span each event belongs to (``home``)."""

    def __init__(self, task_key: str, records: Iterable[EventRecord], end: datetime | None) -> None:
        self.spans: list[dict[str, Any]] = []  # an attempt's span, as it is built
        self.homes: dict[int, int] = {}  # a start's or finish's id -> index of its span
        for n, (s, finish) in enumerate(attempts(records)):
            index = len(self.spans)
            self.spans.append(
                {
                    "start": s,
                    "finish": finish,
                    "until": finish.at if finish is not None else end,
                    "span_id": _id(f"attempt {task_key} {s.id}", 16),
                    "n": n + 1,
                }
            )
            self.homes[s.id] = index
            if finish is not None:
                self.homes[finish.id] = index
        # An attempt's spans (redeliveries).
        self.by_attempt: dict[tuple[str, int | str], list[int]] = {}
        for index, a in enumerate(self.spans):
            if (key := attempt_of(a["start"])) is not None:
                self.by_attempt.setdefault(key, []).append(index)
        self.starts = [
            a["start"].at.timestamp() if a["start"].at else float("-inf") for a in self.spans
        ]

    def home(self, r: EventRecord) -> int | None:
        """The index of the attempt span an event belongs to; None: the root."""
        if r.id in self.homes:
            return self.homes[r.id]
        if r.at is None:
            return None
        key = attempt_of(r)
        if r.source != "broker" and key is not None:
            # The client named the attempt it belongs to, whatever its thread.
            mine = self.by_attempt.get(key, [])
            inside = [i for i in mine if _inside(self.spans[i], r)]
            return (inside or mine)[0] if mine else None
        if r.source == "broker":
            mine = self.by_attempt.get(key, []) if key is not None else []
            inside = [i for i in mine if _inside(self.spans[i], r)]
            return inside[0] if inside else None
        if r.source != "log":
            return None
        # A record that names no attempt: the first attempt of its process open at its
        # time, among the last spans started before it (a bound, not a scan of them all).
        last = bisect.bisect_right(self.starts, r.at.timestamp())
        for index in range(max(0, last - SPANS_LOOKED_AT), last):
            a = self.spans[index]
            if _inside(a, r) and r.body.get("pid") in (None, a["start"].body.get("pid")):
                return index
        return None


def _finding_event(f: Finding, at: datetime | None) -> dict[str, Any]:
    return {
        "timeUnixNano": _nanos(at),
        "name": f"finding.{f.kind}",
        "attributes": _attributes(
            {
                "lifecycle.finding.kind": f.kind,
                "lifecycle.finding.cause": f.cause,
                "lifecycle.finding.message": f.message,
                "lifecycle.finding.events": ", ".join(map(str, f.events)),
            }
        ),
    }


def _root_span(
    task_key: str,
    start: datetime | None,
    end: datetime | None,
    count: int,
    findings: Sequence[Finding],
    status: str | None,
    url: str | None,
) -> dict[str, Any]:
    """The root span, without its events."""
    return {
        "traceId": _id(f"lifecycle task {task_key}", 32),
        "spanId": _id(f"root {task_key}", 16),
        "name": f"task {task_key}",
        "kind": KIND_INTERNAL,
        "startTimeUnixNano": _nanos(start),
        "endTimeUnixNano": _nanos(end),
        "attributes": _attributes(
            {
                "lifecycle.task": task_key,
                "lifecycle.nodes.status": status,
                "lifecycle.events": count,
                "lifecycle.url": url,
            }
        ),
        "status": {"code": STATUS_ERROR, "message": f"{len(findings)} finding(s)"}
        if findings
        else {},
    }


def _attempt_span(task_key: str, a: dict[str, Any]) -> dict[str, Any]:
    """An attempt's span, without its events."""
    s, finish = a["start"], a["finish"]
    outcome = finish.kind if finish is not None else "unfinished"
    return {
        "traceId": _id(f"lifecycle task {task_key}", 32),
        "spanId": a["span_id"],
        "parentSpanId": _id(f"root {task_key}", 16),
        "name": _attempt_name(s, a["n"]),
        "kind": KIND_CONSUMER,
        "startTimeUnixNano": _nanos(s.at),
        "endTimeUnixNano": _nanos(a["until"]),
        "attributes": _attributes(
            {
                "messaging.message.id": s.body.get("message_id"),
                "messaging.destination.name": s.body.get("queue"),
                "lifecycle.attempt": s.body.get("attempt"),
                "lifecycle.outcome": outcome,
                "lifecycle.redelivered": s.body.get("redelivered"),
                "process.pid": s.body.get("pid"),
                "thread.name": s.body.get("thread"),
            }
        ),
        "status": {"code": STATUS_ERROR, "message": str(finish.body.get("exception") or "")}
        if finish is not None and finish.kind in ("fail", "nack")
        else {},
    }


def _document(spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes({"service.name": SERVICE})},
                "scopeSpans": [
                    {"scope": {"name": "lifecycle.timeline.otlp", "version": "1"}, "spans": spans}
                ],
            }
        ]
    }


def trace(
    task_key: str,
    views: Sequence[EventView],
    findings: Sequence[Finding],
    *,
    status: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """The task's trace as one OTLP/JSON document (``views`` in the timeline's order)."""
    times = [v.record.at for v in views if v.record.at is not None]
    start, end = (min(times), max(times)) if times else (None, None)
    found = Attempts(task_key, [v.record for v in views], end)
    events_of: list[list[dict[str, Any]]] = [[] for _ in found.spans]
    root_events: list[dict[str, Any]] = []
    for v in views:
        home = found.home(v.record)
        (events_of[home] if home is not None else root_events).append(_span_event(v))
    for f in findings:
        at = next((v.record.at for v in views if v.record.id in f.events), start)
        root_events.append(_finding_event(f, at))
    root = _root_span(task_key, start, end, len(views), findings, status, url)
    spans = [{**root, "events": root_events}]
    for a, events in zip(found.spans, events_of, strict=True):
        spans.append({**_attempt_span(task_key, a), "events": events})
    return _document(spans)


CHUNK = 64 * 1024  # bytes of a streamed trace sent at a time
# Pages read between two blanks sent while the trace is made (JSON allows whitespace
# before a document): a proxy or client waiting for it does not take it for a dead server.
KEEPALIVE_PAGES = 10


def trace_chunks(
    task_key: str,
    pages: Callable[[bool], Iterable[Sequence[EventView] | Sequence[EventRecord]]],
    findings: Sequence[Finding],
    *,
    status: str | None = None,
    url: str | None = None,
) -> Generator[bytes]:
    """The same document as ``trace``, as chunks of about ``CHUNK`` bytes, for a history
    too long to hold: ``pages(False)`` walks it in time order as records, ``pages(True)``
    as views, one page at a time. The first walk finds the attempts; the second writes
    each span event to a temporary file, noting its span, then the spans are sent from
    it, so memory holds a page, the attempts and three numbers an event. Until it is sent,
    a blank goes out every ``KEEPALIVE_PAGES`` pages."""
    start = end = None
    steps: list[EventRecord] = []  # the broker steps: the attempts' spans
    for n, page in enumerate(pages(False), 1):
        if n % KEEPALIVE_PAGES == 0:
            yield b"\n"
        for r in page:
            record = r.record if isinstance(r, EventView) else r
            if record.at is not None:
                start = record.at if start is None else min(start, record.at)
                end = record.at if end is None else max(end, record.at)
            if record.source == "broker" and (
                record.kind == "start" or record.kind in ATTEMPT_ENDS
            ):
                steps.append(record)
    found = Attempts(task_key, steps, end)
    del steps
    wanted = {i for f in findings for i in f.events}
    first_at: dict[int, datetime | None] = {}  # a finding's event -> its time (first seen)
    homes, offsets, lengths = array("q"), array("q"), array("q")
    with tempfile.TemporaryFile() as spool:
        count = 0
        for n, page in enumerate(pages(True), 1):
            if n % KEEPALIVE_PAGES == 0:
                yield b"\n"
            for v in page:
                if not isinstance(v, EventView):
                    continue
                count += 1
                if v.record.id in wanted and v.record.id not in first_at:
                    first_at[v.record.id] = v.record.at
                data = json.dumps(_span_event(v)).encode()
                home = found.home(v.record)
                homes.append(-1 if home is None else home)
                offsets.append(spool.tell())
                lengths.append(len(data))
                spool.write(data)
        out = bytearray()

        def events(home: int) -> Iterator[bytes]:
            """The span events of one span, from the spool, comma-separated."""
            nonlocal out
            first = True
            for index in order[bounds[home + 1] : bounds[home + 2]]:
                spool.seek(offsets[index])
                if not first:
                    out += b", "
                first = False
                out += spool.read(lengths[index])
                if len(out) >= CHUNK:
                    yield bytes(out)
                    out = bytearray()

        # The events grouped by span (the root first), each group in the timeline's order.
        bounds = [0] * (len(found.spans) + 2)  # where each span's group ends in ``order``
        for home in homes:
            bounds[home + 2] += 1
        for i in range(1, len(bounds)):
            bounds[i] += bounds[i - 1]
        order = array("q", bytes(8 * len(homes)))
        place = bounds[:]
        for index, home in enumerate(homes):
            order[place[home + 1]] = index
            place[home + 1] += 1
        del place
        document = json.dumps(_document([])).encode()
        head, tail = document.split(b'"spans": []')
        out += head + b'"spans": ['
        root = _root_span(task_key, start, end, count, findings, status, url)
        out += json.dumps(root).encode()[:-1] + b', "events": ['
        yield from events(-1)
        for n, f in enumerate(findings):
            at = min((t for i in f.events if (t := first_at.get(i)) is not None), default=start)
            out += b", " if bounds[1] or n else b""
            out += json.dumps(_finding_event(f, at)).encode()
        out += b"]}"
        for home, a in enumerate(found.spans):
            out += b", " + json.dumps(_attempt_span(task_key, a)).encode()[:-1]
            out += b', "events": ['
            yield from events(home)
            out += b"]}"
        out += b"]" + tail
        yield bytes(out)
