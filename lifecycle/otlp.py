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
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lifecycle.checker import Finding
from lifecycle.events import EventRecord, attempt_of
from lifecycle.timeline import EventView, attempts

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
                "lifecycle.status": r.status,
                "lifecycle.summary": view.summary,
                "lifecycle.txid": r.txid,
                "lifecycle.received_at": r.received_at.isoformat() if r.received_at else None,
                "lifecycle.findings": ", ".join(view.findings) or None,
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


def trace(
    task_key: str,
    views: Sequence[EventView],
    findings: Sequence[Finding],
    *,
    status: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """The task's trace as one OTLP/JSON document (``views`` in the timeline's order)."""
    trace_id = _id(f"lifecycle task {task_key}", 32)
    root_id = _id(f"root {task_key}", 16)
    times = [v.record.at for v in views if v.record.at is not None]
    start, end = (min(times), max(times)) if times else (None, None)
    spans_of: list[dict[str, Any]] = []  # an attempt's span, as it is built
    homes: dict[int, int] = {}  # event id -> index of its attempt span
    records = [v.record for v in views]
    for n, (s, finish) in enumerate(attempts(records)):
        until = finish.at if finish is not None else end
        index = len(spans_of)
        spans_of.append(
            {
                "start": s,
                "finish": finish,
                "until": until,
                "span_id": _id(f"attempt {task_key} {s.id}", 16),
                "events": [],
                "n": n + 1,
            }
        )
        homes[s.id] = index
        if finish is not None:
            homes[finish.id] = index
    by_attempt: dict[tuple[str, int | str], list[int]] = {}  # an attempt's spans (redeliveries)
    for index, a in enumerate(spans_of):
        if (key := attempt_of(a["start"])) is not None:
            by_attempt.setdefault(key, []).append(index)
    starts = [a["start"].at.timestamp() if a["start"].at else float("-inf") for a in spans_of]
    for r in records:
        if r.id in homes or r.at is None:
            continue
        key = attempt_of(r)
        if r.source != "broker" and key is not None:
            # The client named the attempt it belongs to, whatever its thread.
            mine = by_attempt.get(key, [])
            inside = [i for i in mine if _inside(spans_of[i], r)]
            if mine:
                homes[r.id] = (inside or mine)[0]
            continue
        if r.source == "broker":
            mine = by_attempt.get(key, []) if key is not None else []
            inside = [i for i in mine if _inside(spans_of[i], r)]
            if inside:
                homes[r.id] = inside[0]
            continue
        if r.source != "log":
            continue
        # A record that names no attempt: the first attempt of its process open at its
        # time, among the last spans started before it (a bound, not a scan of them all).
        last = bisect.bisect_right(starts, r.at.timestamp())
        for index in range(max(0, last - SPANS_LOOKED_AT), last):
            a = spans_of[index]
            if _inside(a, r) and r.body.get("pid") in (None, a["start"].body.get("pid")):
                homes[r.id] = index
                break
    root_events: list[dict[str, Any]] = []
    for v in views:
        home = homes.get(v.record.id)
        (spans_of[home]["events"] if home is not None else root_events).append(_span_event(v))
    for f in findings:
        root_events.append(
            {
                "timeUnixNano": _nanos(
                    next((v.record.at for v in views if v.record.id in f.events), start)
                ),
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
        )
    spans = [
        {
            "traceId": trace_id,
            "spanId": root_id,
            "name": f"task {task_key}",
            "kind": KIND_INTERNAL,
            "startTimeUnixNano": _nanos(start),
            "endTimeUnixNano": _nanos(end),
            "attributes": _attributes(
                {
                    "lifecycle.task": task_key,
                    "lifecycle.status": status,
                    "lifecycle.events": len(views),
                    "lifecycle.url": url,
                }
            ),
            "events": root_events,
            "status": {"code": STATUS_ERROR, "message": f"{len(findings)} finding(s)"}
            if findings
            else {},
        }
    ]
    for a in spans_of:
        s, finish = a["start"], a["finish"]
        outcome = finish.kind if finish is not None else "unfinished"
        spans.append(
            {
                "traceId": trace_id,
                "spanId": a["span_id"],
                "parentSpanId": root_id,
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
                "events": a["events"],
                "status": {"code": STATUS_ERROR, "message": str(finish.body.get("exception") or "")}
                if finish is not None and finish.kind in ("fail", "nack")
                else {},
            }
        )
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes({"service.name": SERVICE})},
                "scopeSpans": [
                    {"scope": {"name": "lifecycle.otlp", "version": "1"}, "spans": spans}
                ],
            }
        ]
    }
