"""A timeline as an OpenTelemetry trace (OTLP/JSON): spans for the task and its attempts,
events as span events, findings marked."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from lifecycle.check.rules import Finding
from lifecycle.history import in_time_order
from lifecycle.timeline.layout import TimelineBuilder
from lifecycle.timeline.otlp import trace
from tests.histories import T0, event

pytestmark = pytest.mark.unit


def test_a_task_is_one_trace_with_a_span_per_attempt() -> None:
    records = in_time_order(
        [
            event(1, "db", "insert", 0, status="PENDING"),
            event(2, "broker", "enqueue", 5, message_id="m1", attempt=1),
            event(3, "broker", "start", 10, message_id="m1", attempt=1, pid=7, actor="run_task"),
            event(4, "log", "error", 20, pid=7, message="boom"),
            event(
                5, "broker", "fail", 30, message_id="m1", attempt=1, pid=7, exception="ValueError()"
            ),
            event(6, "broker", "start", 50, message_id="m1", attempt=2, pid=7, actor="run_task"),
            event(7, "db", "update", 60, status="COMPLETED"),
            event(8, "broker", "ack", 70, message_id="m1", attempt=2, pid=7),
            event(9, "api", "read", 80, status="RUNNING"),
        ]
    )
    views = TimelineBuilder().extend(records)
    found = [Finding("stale_read", (7, 9), "The read at 12:00:00.080 returned RUNNING.")]

    document = trace("job-1", views, found, status="COMPLETED", url="http://x/tasks/job-1")
    json.dumps(document)  # plain JSON

    (resource,) = document["resourceSpans"]
    spans = resource["scopeSpans"][0]["spans"]
    root, first, second = spans
    assert len({s["traceId"] for s in spans}) == 1 and len(root["traceId"]) == 32
    assert [s.get("parentSpanId") for s in spans] == [None, root["spanId"], root["spanId"]]
    assert (root["startTimeUnixNano"], root["endTimeUnixNano"]) == (
        str(round(T0.timestamp() * 1e9)),
        str(round((T0 + timedelta(milliseconds=80)).timestamp() * 1e9)),
    )
    assert first["name"] == "attempt 1 run_task" and first["status"]["code"] == 2
    assert [e["name"] for e in first["events"]] == ["broker.start", "log.error", "broker.fail"]
    assert [e["name"] for e in second["events"]] == ["broker.start", "broker.ack"]
    assert second["status"] == {}
    names = [e["name"] for e in root["events"]]
    assert names == ["db.insert", "broker.enqueue", "db.update", "api.read", "finding.stale_read"]
    assert root["status"]["code"] == 2
    # the same task exports as the same trace
    again = trace("job-1", views, found)
    assert again["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == root["traceId"]


def test_a_record_that_names_its_attempt_goes_to_that_attempts_span() -> None:
    # Given two attempts in one process at once, and records from an event loop's thread
    # that name their attempt (one logged after its attempt's ack reached us)
    records = in_time_order(
        [
            event(1, "broker", "start", 10, message_id="m1", attempt=1, pid=7, actor="a"),
            event(2, "broker", "start", 12, message_id="m2", attempt=1, pid=7, actor="a"),
            event(3, "log", "warning", 20, pid=7, thread="loop", message_id="m2", attempt=1),
            event(4, "api", "read", 25, status="RUNNING", message_id="m1", attempt=1),
            event(5, "broker", "ack", 30, message_id="m1", attempt=1, pid=7),
            event(6, "broker", "ack", 32, message_id="m2", attempt=1, pid=7),
            event(7, "log", "error", 40, pid=7, thread="loop", message_id="m1", attempt=1),
        ]
    )
    document = trace("job-1", TimelineBuilder().extend(records), [])
    _, first, second = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    # Then each is on its own attempt's span, not the first one open in its time
    assert [e["name"] for e in first["events"]] == [
        "broker.start",
        "api.read",
        "broker.ack",
        "log.error",
    ]
    assert [e["name"] for e in second["events"]] == ["broker.start", "log.warning", "broker.ack"]
