"""The dashboard's JSON API: scenarios, runs, timelines and events (README: JSON API).

Every error is ``lifecycle.runtime.http.json_error``'s shape, ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dashboard import replies, runs
from dashboard.access import access_of, needs
from dashboard.render import fields_json
from lifecycle import events
from lifecycle.check import findings
from lifecycle.check.rules import Finding
from lifecycle.history import current_status
from lifecycle.models import Run
from lifecycle.nodes.status import deployment_status
from lifecycle.people import quotas
from lifecycle.runtime.database import off_thread
from lifecycle.runtime.http import json_error, json_request
from lifecycle.scenarios import probe
from lifecycle.scenarios.catalogue import (
    BodyError,
    Scenario,
    UnknownScenario,
    all_scenarios,
    check_body,
    find_scenario,
    get_scenario,
)
from lifecycle.statuses import MAX_STATUS
from lifecycle.store import eventlog, imports, outline
from lifecycle.store.outline import cursor_of, format_cursor, parse_cursor
from lifecycle.timeline import exports
from lifecycle.timeline.layout import EventView
from lifecycle.timeline.otlp import trace as otlp_trace
from lifecycle.timeline.otlp import trace_chunks
from lifecycle.timeline.page import part_views, whole_page


def run_json(run: Run, request: HttpRequest) -> dict[str, Any]:
    return {
        "id": run.id,
        "scenario": run.scenario,
        "state": run.state,
        "verdict": run.verdict,
        "expected": run.expected,
        "observed": run.observed,
        "task": run.task_key,
        "error": run.error or None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "body": run.body,
        "started_by": run.started_by or None,
        "resubmit_of": run.resubmit_of_id,
        "resubmits": list(run.resubmits.values_list("id", flat=True)),
        "findings": findings.findings_json(run.task_key) if run.task_key else [],
        "url": request.build_absolute_uri(reverse("dashboard:run", args=[run.id])),
        "api_url": request.build_absolute_uri(reverse("dashboard:api-run", args=[run.id])),
    }


@require_GET
def scenarios(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"scenarios": [s.as_json() for s in all_scenarios()]})


MAX_RUN_REQUEST = 128 * 1024


def run_options(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    """The options of a request that starts a run: none, or a JSON object whose ``body``
    (any JSON value) replaces the body the scenario would submit."""
    if not request.body and request.content_type == "application/json":
        return {}
    payload = json_request(request, MAX_RUN_REQUEST, what="the request", send="the options")
    if isinstance(payload, JsonResponse):
        return payload
    if not isinstance(payload, dict) or set(payload) - {"body"}:
        return json_error(400, 'send {} or {"body": <the JSON body to submit>}')
    if "body" not in payload:
        return {}
    try:
        return {"body": check_body(payload["body"])}
    except BodyError as exc:
        return json_error(400, f"the body {exc}")


# Async so that the HTTP submit the probe makes to this same server is not queued behind
# this request on Django's single thread for sync views.
@require_POST
@needs("run")
async def start_run(request: HttpRequest, name: str) -> JsonResponse:
    try:
        scenario = get_scenario(name)
    except UnknownScenario as exc:
        return json_error(404, str(exc))
    return await _start(request, scenario)


@require_POST
@needs("run")
async def resubmit_run(request: HttpRequest, run_id: int) -> JsonResponse:
    """The run again, with its body or the one sent (an edit): a new run linked to it."""
    old = await Run.objects.filter(pk=run_id).afirst()
    if old is None:
        return json_error(404, f"no run {run_id}")
    scenario = find_scenario(old.scenario)
    if scenario is None:
        return json_error(409, f"scenario {old.scenario!r} is no longer in the scenario files")
    return await _start(request, scenario, old)


async def _start(request: HttpRequest, scenario: Scenario, old: Run | None = None) -> JsonResponse:
    """Start the run (again, for ``old``) with the request's options: the run, 201."""
    options = run_options(request)
    if isinstance(options, JsonResponse):
        return options
    try:
        run = await runs.start_run(request, scenario, old, **options)
    except probe.Unavailable as exc:
        return json_error(409, str(exc))
    body = await off_thread(run_json)(run, request)
    return JsonResponse(body, status=201)


@require_GET
@needs("manage")
async def status(request: HttpRequest) -> JsonResponse:
    """The deployment: nodes, who holds follow and maintain, the lags (README: Several
    nodes). Each source is asked with a short timeout, off the request's thread."""
    found = await off_thread(deployment_status)()
    return JsonResponse(found.as_json(), headers={"Cache-Control": "no-store"})


@require_GET
def run_detail(request: HttpRequest, run_id: int) -> JsonResponse:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return json_error(404, f"no run {run_id}")
    return JsonResponse(run_json(probe.expire_if_abandoned(run), request))


@require_GET
def timeline(request: HttpRequest, task_key: str) -> JsonResponse:
    """The task's events in the page's order, each with its lane, summary and findings.

    ``?expected=STATUS`` checks it against that final status (the pytest plugin's
    ``watch(key, expect=...)``); otherwise against its scenario run's, if it has one.

    Every event, unless ``?limit=N`` (at most ``MAX_PAGE``) asks for pages: then the first
    N, and ``next``, the cursor of the page after (``?after=<next>``; null on the last
    page). A history of more than ``MAX_PAGE`` events always comes in pages, of
    ``MAX_PAGE`` without a limit: no request loads it whole. A cursor is a place in the
    order (an event's time and id), so a walk is not thrown off by events arriving
    meanwhile; one that arrives with an earlier time than the cursor is in the next walk
    from the start. The findings are always whole.
    """
    expected = request.GET.get("expected") or eventlog.expected_for(task_key)
    if expected is not None and len(expected) > MAX_STATUS:
        return json_error(400, f"expected is a status of at most {MAX_STATUS} characters")
    limit, after = request.GET.get("limit"), request.GET.get("after")
    try:
        page_size = int(limit) if limit else None
        if page_size is not None and not 1 <= page_size <= MAX_PAGE:
            raise ValueError
    except ValueError:
        return json_error(400, f"limit is a whole number from 1 to {MAX_PAGE}")
    cursor = parse_cursor(after) if after else None
    if after and cursor is None:
        return json_error(400, "after is a cursor a previous page gave as next")
    if page_size is None and (cursor is not None or outline.longer_than(task_key, MAX_PAGE)):
        page_size = MAX_PAGE  # too long to answer whole: its first page, and next
    if page_size is not None and outline.longer_than(task_key, outline.WINDOWED_ABOVE):
        return _long_timeline(request, task_key, expected, page_size, cursor)
    page = whole_page(task_key, expected)
    if not page.events:
        return json_error(404, f"no event for task {task_key}")
    views = page.events
    if cursor is not None:
        views = [v for v in views if (v.at_us, v.id) > cursor]
    following = None
    if page_size is not None and len(views) > page_size:
        views = views[:page_size]
        following = f"{views[-1].at_us}.{views[-1].id}"
    body = _timeline_body(request, task_key, page.status, expected, page.found, views)
    if page_size is not None or cursor is not None:
        body["total"] = len(page.events)
        body["next"] = following
    return JsonResponse(body)


def _timeline_body(
    request: HttpRequest,
    task_key: str,
    status: str | None,
    expected: str | None,
    found: list[Finding],
    views: list[EventView],
) -> dict[str, Any]:
    return {
        "task": task_key,
        "url": request.build_absolute_uri(reverse("dashboard:task", args=[task_key])),
        "status": status,
        "expected": expected,
        "order": "time at source, then event id",
        "findings": [f.as_json() for f in found],
        "events": [view.as_json() for view in views],
    }


MAX_PAGE = 5000  # events per page of a JSON timeline


def _long_timeline(
    request: HttpRequest,
    task_key: str,
    expected: str | None,
    page_size: int,
    cursor: tuple[int, int] | None,
) -> JsonResponse:
    """A page of a long history's JSON timeline, read from the time index (the history is
    not loaded); its findings are the maintainer's, of the whole history. A heavy export:
    429 when ``exports.limit()`` run already."""
    slot = exports.take()
    if slot is None:
        return _busy()
    try:
        return _long_page(request, task_key, expected, page_size, cursor)
    finally:
        slot.release()


def _busy() -> JsonResponse:
    response = json_error(
        429,
        f"{exports.limit()} long exports are running in this process already "
        f"(LIFECYCLE_EXPORTS); try again in {exports.RETRY_AFTER} s",
    )
    response["Retry-After"] = str(exports.RETRY_AFTER)
    return response


def _long_page(
    request: HttpRequest,
    task_key: str,
    expected: str | None,
    page_size: int,
    cursor: tuple[int, int] | None,
) -> JsonResponse:
    records = outline.window_events(task_key, cursor, None, page_size + 1)
    following = None
    if len(records) > page_size:
        records = records[:page_size]
        following = format_cursor(cursor_of(records[-1]))
    found = findings.latest_stored(task_key, expected)
    views = part_views(task_key, records, found)
    count = eventlog.task_stats([task_key]).get(task_key, (0, 0))[0]
    status = current_status(eventlog.last_statuses(task_key))
    body = _timeline_body(request, task_key, status, expected, found, views)
    return JsonResponse({**body, "total": count, "next": following})


@require_POST
@needs("run")
def import_timeline(request: HttpRequest) -> JsonResponse:
    """Import an exported timeline (this API's ``/timeline`` JSON) as a read-only task:
    201 with its key and page, or 400 with every reason (nothing is stored then)."""
    if request.content_type != "application/json":
        return json_error(415, "send the timeline as JSON, with Content-Type: application/json")
    raw = request.read(imports.MAX_IMPORT_BYTES + 1)
    if len(raw) > imports.MAX_IMPORT_BYTES:
        return json_error(413, f"an import holds at most {imports.MAX_IMPORT_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return json_error(400, f"the file is not JSON: {type(exc).__name__}: {exc}"[:500])
    refusal = quotas.take_import(access_of(request).who, document)
    if refusal is not None:  # nothing imported
        response = json_error(429, refusal.message)
        response["Retry-After"] = str(refusal.retry_after)
        return response
    try:
        done = imports.import_timeline(document, imported_by=access_of(request).who)
    except imports.ImportRefused as exc:
        return JsonResponse(
            {"error": "the timeline was not imported", "reasons": exc.reasons}, status=400
        )
    url = request.build_absolute_uri(reverse("dashboard:task", args=[done.task_key]))
    return JsonResponse(
        {"task": done.task_key, "original": done.original_key, "events": done.events, "url": url},
        status=201,
    )


@require_GET
def otlp(request: HttpRequest, task_key: str) -> HttpResponseBase:
    """The task's timeline as an OpenTelemetry trace in OTLP/JSON (``lifecycle.timeline.otlp``),
    offered as a file to download: it opens in Jaeger. A history longer than
    ``outline.WINDOWED_ABOVE`` is streamed, read page by page from the time index, with
    the findings the maintainer stored; it is a heavy export (429 past the cap)."""
    url = request.build_absolute_uri(reverse("dashboard:task", args=[task_key]))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", task_key)[:80] or "task"
    response: HttpResponseBase
    if outline.longer_than(task_key, outline.WINDOWED_ABOVE):
        slot = exports.take()
        if slot is None:
            return _busy()
        try:
            response = _streamed_trace(request, task_key, url, slot)
        except BaseException:
            slot.release()
            raise
    else:
        page = whole_page(task_key)
        if not page.events:
            return json_error(404, f"no event for task {task_key}")
        response = JsonResponse(
            otlp_trace(task_key, page.events, page.found, status=page.status, url=url)
        )
    response["Content-Disposition"] = f'attachment; filename="{name}.otlp.json"'
    return response


EXPORT_PAGE = 500  # events a streamed export reads at a time


def _streamed_trace(
    request: HttpRequest, task_key: str, url: str, slot: exports.Slot
) -> StreamingHttpResponse:
    found = findings.latest_stored(task_key, eventlog.expected_for(task_key))
    status = current_status(eventlog.last_statuses(task_key))

    def pages(views: bool) -> Iterator[list[Any]]:
        after = None
        while True:
            records = outline.window_events(task_key, after, None, EXPORT_PAGE)
            if not records:
                return
            yield part_views(task_key, records, found) if views else records
            if len(records) < EXPORT_PAGE:
                return
            after = cursor_of(records[-1])

    chunks = trace_chunks(task_key, pages, found, status=status, url=url)
    streamed: _Chunks | _AsyncChunks = (
        _AsyncChunks(chunks, slot, request.scope.get("client"))
        if isinstance(request, ASGIRequest)
        else _Chunks(chunks, slot)
    )
    return StreamingHttpResponse(streamed, content_type="application/json")


class _Stream:
    """A streamed export's chunks, holding its slot until they end, the response closes,
    the client goes away, or (whatever else happened) the stream is collected."""

    def __init__(self, chunks: Generator[bytes], slot: exports.Slot) -> None:
        self.chunks, self.slot = chunks, slot
        weakref.finalize(self, slot.release)

    def _next(self) -> bytes | None:
        chunk = next(self.chunks, None)
        if chunk is None:
            self.slot.release()
        return chunk

    def close(self) -> None:
        try:
            self.chunks.close()
        except ValueError:  # still running in its thread: it ends with the slot given back
            pass
        self.slot.release()


class _Chunks(_Stream):
    """For a WSGI server (and Django's test client): read where they are sent."""

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = self._next()
        if chunk is None:
            raise StopIteration
        return chunk


STREAM_BUFFERED = 2 * 1024 * 1024  # bytes of an export held unsent before it waits
STREAM_STALL = 60.0  # seconds it waits for a client that reads nothing, then ends


class _AsyncChunks(_Stream):
    """For an ASGI server (daphne): each chunk made in a worker thread (they read the
    database), so the stream is sent as it is made. Django would gather a synchronous
    iterator's whole content first."""

    def __init__(self, chunks: Generator[bytes], slot: exports.Slot, client: Any = None) -> None:
        super().__init__(chunks, slot)
        self.client = client

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            if not await self._drained():
                self.close()  # a client that reads nothing: the export ends, cut short
                raise StopAsyncIteration
            chunk = await sync_to_async(self._next, thread_sensitive=True)()
        except asyncio.CancelledError:
            # The client went away: Django cancels the response without closing it.
            self.close()
            raise
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def _drained(self) -> bool:
        """Wait while more than STREAM_BUFFERED of this response is held unsent (daphne
        sends on with no backpressure: a client that stopped reading had the whole export
        kept in memory); False when the client read nothing for STREAM_STALL seconds."""
        waited, last = 0.0, replies.buffered(self.client)
        while last is not None and last > STREAM_BUFFERED:
            await asyncio.sleep(0.05)
            now = replies.buffered(self.client)
            waited = 0.0 if now is not None and now < last else waited + 0.05
            if waited >= STREAM_STALL:
                logger.warning("export to %s: nothing read for %.0f s; ended", self.client, waited)
                return False
            last = now
        return True


@require_GET
def event_fields(request: HttpRequest, event_id: int) -> JsonResponse:
    """One event's fields, for the popover of a long timeline (its cards carry none)."""
    event = eventlog.event(event_id)
    if event is None:
        return json_error(404, f"no event {event_id}")
    return JsonResponse(
        {
            "event": event.as_json(),
            "fields": fields_json(event),
            # Its place in the timeline's order: where a long page finds its window.
            "cursor": format_cursor(cursor_of(event)),
        }
    )


logger = logging.getLogger(__name__)

MAX_EVENTS = 1000  # per request
# Django's own cap on a request body (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB by default).
MAX_REQUEST_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440


@require_POST
@needs("run")
def post_events(request: HttpRequest) -> JsonResponse:
    """Store one schema-1 event, or a list of up to ``MAX_EVENTS``, from any language.

    Validated like the ingestor's messages (``events.parse_message``); the good ones are
    stored and each bad one answered with its reason, 400 when none is good. A uuid already
    stored is a duplicate, not an error: a client may retry.
    """
    # Only JSON (a browser cannot send it cross-site without a preflight), from a runner's
    # token, or a runner's session with its CSRF token.
    payload = json_request(request, MAX_REQUEST_BYTES, what="the body", send="the events")
    if isinstance(payload, JsonResponse):
        return payload
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        return json_error(400, "no event: send one event object or a list of them")
    if len(items) > MAX_EVENTS:
        return json_error(413, f"{len(items)} events: send at most {MAX_EVENTS} a request")
    refusal = quotas.take(access_of(request).who, len(items))
    if refusal is not None:  # the whole request, before anything of it is stored
        response = json_error(429, refusal.message)
        response["Retry-After"] = str(refusal.retry_after)
        return response
    good: list[tuple[int, events.IncomingEvent]] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            events.check_size(events.encode(item))  # the exchange's limit, per event
            good.append((index, events.validate(item)))
        except events.MalformedEvent as exc:
            rejected.append({"index": index, "error": str(exc)})
        except Exception as exc:  # e.g. RecursionError on a deeply nested body
            rejected.append({"index": index, "error": f"cannot parse: {type(exc).__name__}"})
    copies = imports.imported_among(sorted({event.task_key for _, event in good}))
    if copies:  # an imported task is a read-only copy
        rejected += [
            {"index": i, "error": f"task {e.task_key!r} is an imported copy: it is read-only"}
            for i, e in good
            if e.task_key in copies
        ]
        good = [(i, e) for i, e in good if e.task_key not in copies]
    stored, refused = eventlog.append([event for _, event in good]) if good else (0, [])
    rejected += [{"index": good[i][0], "error": reason} for i, reason in refused]
    rejected.sort(key=lambda r: r["index"])
    accepted = len(good) - len(refused)
    body = {
        "stored": stored,
        "duplicates": accepted - stored,
        "rejected": rejected,
    }
    return JsonResponse(body, status=200 if accepted else 400)
