"""A long history's full exports, against the real database: the JSON timeline without a
limit answers a page and a cursor, the OTLP trace streams in bounded chunks, and heavy
exports beyond ``LIFECYCLE_EXPORTS`` are refused with 429, not queued (issue 19, item 3)."""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connections
from django.test import AsyncClient

from dashboard.api import MAX_PAGE
from lifecycle.check import findings
from lifecycle.history import current_status, in_time_order
from lifecycle.models import Event
from lifecycle.people.tokens import create
from lifecycle.store import eventlog
from lifecycle.timeline import exports, otlp
from lifecycle.timeline.layout import TimelineBuilder
from tests.histories import stored_long_task

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EVENTS = 12_000


@pytest.fixture
def big_task(postgres) -> str:
    return stored_long_task("big", EVENTS)


def all_ids(key: str) -> list[int]:
    return list(Event.objects.filter(task_key=key).values_list("id", flat=True))


def span_homes(document: dict[str, Any]) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """Each event's span (event id -> span id), and the findings' span events."""
    homes: dict[int, str] = {}
    found = []
    for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for event in span["events"]:
            if event["name"].startswith("finding."):
                found.append(event)
                continue
            attributes = {a["key"]: a["value"] for a in event["attributes"]}
            event_id = int(attributes["lifecycle.event.id"]["intValue"])
            assert event_id not in homes, f"event {event_id} twice in the trace"
            homes[event_id] = span["spanId"]
    return homes, found


def test_a_long_timeline_without_a_limit_answers_its_first_page_and_next_walks_it_all(
    client, big_task
):
    # Given a task of 12,000 events, checked by the maintainer
    findings.refresh([big_task])
    # When its timeline is asked for without a limit
    response = client.get(f"/api/tasks/{big_task}/timeline")
    # Then it answers the first page, not everything, with the total and a cursor
    assert response.status_code == 200
    body = response.json()
    assert len(body["events"]) == MAX_PAGE
    assert body["total"] == EVENTS and body["next"]
    assert body["findings"]  # whole, on every page
    # And following next gives every event exactly once, in the timeline's order
    seen = [(e["at"], e["id"]) for e in body["events"]]
    pages = 1
    while body["next"]:
        body = client.get(f"/api/tasks/{big_task}/timeline?after={body['next']}").json()
        assert len(body["events"]) <= MAX_PAGE and body["total"] == EVENTS
        seen += [(e["at"], e["id"]) for e in body["events"]]
        pages += 1
    assert pages == 3
    assert seen == sorted(seen)
    assert sorted(i for _, i in seen) == sorted(all_ids(big_task))


def test_a_short_timeline_without_a_limit_is_still_whole(client, postgres):
    key = stored_long_task("short", 300)
    body = client.get(f"/api/tasks/{key}/timeline").json()
    assert len(body["events"]) == 300 and "next" not in body


def test_a_long_otlp_trace_streams_in_bounded_chunks_and_keeps_every_event_in_its_span(
    client, big_task
):
    # Given a task of 12,000 events, checked by the maintainer
    findings.refresh([big_task])
    # When its trace is exported
    response = client.get(f"/api/tasks/{big_task}/otlp")
    # Then it is streamed, as a file, in chunks of at most about 64 KiB
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"].endswith('.otlp.json"')
    chunks = list(response.streaming_content)
    assert len(chunks) > 10
    assert max(len(c) for c in chunks) <= otlp.CHUNK + 2 * otlp.MAX_BODY + 4096
    assert exports.running() == 0  # the export's slot is back
    document = json.loads(b"".join(chunks))
    homes, found_events = span_homes(document)
    # And every event is there once, in the span the whole-history trace puts it in
    assert sorted(homes) == sorted(all_ids(big_task))
    found = findings.latest_stored(big_task, eventlog.expected_for(big_task))
    assert found and len(found_events) == len(found)
    records = in_time_order(eventlog.task_events(big_task))
    whole = otlp.trace(
        big_task, TimelineBuilder().extend(records), found, status=current_status(records)
    )
    expected_homes, expected_found = span_homes(whole)
    assert homes == expected_homes
    assert found_events == expected_found
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["spanId"] for s in spans] == [
        s["spanId"] for s in whole["resourceSpans"][0]["scopeSpans"][0]["spans"]
    ]
    root = {a["key"]: a["value"] for a in spans[0]["attributes"]}
    assert root["lifecycle.events"] == {"intValue": str(EVENTS)}


async def export_peak(client: AsyncClient, key: str, token: str) -> tuple[int, int, int]:
    """Export a task's trace through Django's ASGI handler, as daphne serves it, reading
    it as it comes: bytes sent, chunks, and the peak of memory allocated meanwhile."""
    tracemalloc.start()
    try:
        response = await client.get(
            f"/api/tasks/{key}/otlp", headers={"authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.content[:300]
        assert response.streaming and response.is_async
        size = chunks = 0
        async for chunk in response.streaming_content:
            size += len(chunk)
            chunks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return size, chunks, peak


async def test_under_asgi_the_trace_is_sent_as_it_is_made_with_bounded_memory(big_task):
    # Given a viewer's token, a task of 12,000 events and one of 3,000
    _, token = await database_sync_to_async(create)("export-test", "viewer")
    small = await database_sync_to_async(stored_long_task)("small", 3000)
    client = AsyncClient()
    await export_peak(client, small, token)  # the first request loads what any loads
    # When each one's trace is exported
    small_size, _, small_peak = await export_peak(client, small, token)
    size, chunks, peak = await export_peak(client, big_task, token)
    # Then the server never held the document (or the history) whole: its peak is a
    # fraction of what it sent, and four times the history costs some 70 bytes an event
    # more (where each event waits, and the attempts' spans), not four times the memory:
    # about a tenth of what each event adds to the answer
    assert chunks > 10 and size > 3 * small_size > 6_000_000
    assert peak < size / 2, (peak, size)
    assert peak - small_peak < (size - small_size) / 6, (small_peak, peak)
    assert exports.running() == 0
    await sync_to_async(connections.close_all)()  # the handler's thread's, for teardown


def test_heavy_exports_past_the_cap_are_refused_with_429_and_retry_after(
    client, big_task, settings
):
    settings.LIFECYCLE_EXPORTS = 2
    short = stored_long_task("short", 50)
    # Given every export slot of the process taken (two long exports running)
    held = [exports.take() for _ in range(2)]
    assert all(held) and exports.take() is None
    try:
        # When a third long export is asked for, as a trace or as a long page
        for url in (
            f"/api/tasks/{big_task}/otlp",
            f"/api/tasks/{big_task}/timeline",
            f"/api/tasks/{big_task}/timeline?limit=3000",
        ):
            response = client.get(url)
            # Then it is refused at once, saying why and when to come back
            assert response.status_code == 429, url
            assert response["Retry-After"] == str(exports.RETRY_AFTER)
            assert "LIFECYCLE_EXPORTS" in response.json()["error"]
        # And a short history's exports are not heavy: they are served
        assert client.get(f"/api/tasks/{short}/otlp").status_code == 200
        assert client.get(f"/api/tasks/{short}/timeline").status_code == 200
    finally:
        for slot in held:
            assert slot is not None
            slot.release()
    # And once the slots are free, the export is served; one closed unread frees its slot
    response = client.get(f"/api/tasks/{big_task}/otlp")
    assert response.status_code == 200 and exports.running() == 1
    response.close()
    assert exports.running() == 0
    # And one the server lost track of (its client gone) frees it when it is collected
    response = client.get(f"/api/tasks/{big_task}/otlp")
    assert exports.running() == 1
    del response
    gc.collect()
    assert exports.running() == 0
