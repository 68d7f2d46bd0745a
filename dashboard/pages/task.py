"""Task (``task.html``): the timeline of any task, lab, attached or imported; and the import
of an exported timeline file (``import``)."""

from __future__ import annotations

import json

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import access_of, needs
from dashboard.pages.timeline import page_context
from dashboard.render import commit_item, commit_items, event_html, rows_html, window_html
from lifecycle.models import ImportedTask, Run
from lifecycle.people import quotas
from lifecycle.store import eventlog, imports, outline
from lifecycle.store.outline import WINDOW, cursor_of, format_cursor, parse_cursor
from lifecycle.timeline.layout import collapse, read_signature
from lifecycle.timeline.page import part_views, read_page


@require_GET
def task_page(request: HttpRequest, task_key: str) -> HttpResponse:
    whole = request.GET.get("whole") == "1"
    page = read_page(task_key, whole=whole)
    runs = list(Run.objects.filter(task_key=task_key).order_by("id"))
    if not page.events and not runs:
        raise Http404(f"no event for task {task_key}")
    imported = ImportedTask.objects.filter(task_key=task_key).first()
    if imported is not None:
        page.live = False  # a copy: nothing more comes
    return render(
        request,
        "dashboard/task.html",
        {**page_context(page), "runs": runs, "imported": imported},
    )


@require_POST
@needs("run")
def import_page(request: HttpRequest) -> HttpResponse:
    """The home page's import form: an exported timeline file becomes a read-only task."""
    upload = request.FILES.get("file")
    if upload is None:
        reasons = ["choose a timeline file (the JSON a task page's “timeline as JSON” gives)"]
    elif upload.size is not None and upload.size > imports.MAX_IMPORT_BYTES:
        limit = imports.MAX_IMPORT_BYTES
        reasons = [f"the file has {upload.size} bytes; an import takes at most {limit}"]
    else:
        try:
            document = json.loads(upload.read())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            reasons = [f"the file is not JSON: {type(exc).__name__}: {exc}"[:300]]
        else:
            refusal = quotas.take_import(access_of(request).who, document)
            if refusal is not None:
                response = render(
                    request,
                    "dashboard/import_failed.html",
                    {"reasons": [refusal.message]},
                    status=429,
                )
                response["Retry-After"] = str(refusal.retry_after)
                return response
            try:
                done = imports.import_timeline(document, imported_by=access_of(request).who)
            except imports.ImportRefused as exc:
                reasons = exc.reasons
            else:
                return redirect("dashboard:task", done.task_key)
    return render(request, "dashboard/import_failed.html", {"reasons": reasons}, status=400)


def _place(request: HttpRequest, name: str) -> tuple[bool, tuple[int, int] | None]:
    text = request.GET.get(name, "")
    cursor = parse_cursor(text) if text else None
    return (not text or cursor is not None), cursor


# The refusals of the rows that lifecycle.js fetches: a sentence, not a page.
PLAIN = "text/plain; charset=utf-8"


@require_GET
def window(request: HttpRequest, task_key: str) -> HttpResponse:
    """Rows of a long timeline between two places (``after``, ``before``: cursors a
    window of its page gave; empty: open), up to ``WINDOW`` events; when more remain, a
    window for the rest follows them."""
    good_after, after = _place(request, "after")
    good_before, before = _place(request, "before")
    if not (good_after and good_before):
        return HttpResponseBadRequest(
            "after and before are places a page gave: <µs>.<id>", content_type=PLAIN
        )
    try:
        expected_count = max(0, min(int(request.GET.get("count") or 0), 10**9))
    except ValueError:
        expected_count = 0
    records = outline.window_events(task_key, after, before, WINDOW + 1)
    more = len(records) > WINDOW
    records = records[:WINDOW]
    html = rows_html(collapse(part_views(task_key, records)), inline_fields=False)
    if more:
        rest = max(expected_count - WINDOW, 1)
        html += window_html(task_key, cursor_of(records[-1]), before, rest)
    return HttpResponse(html)


@require_GET
def read_run(request: HttpRequest, task_key: str) -> HttpResponse:
    """The reads of a folded run (``first`` and ``last`` event ids), as rows; ``after``
    continues a long run from where the previous answer ended."""
    try:
        first_id, last_id = int(request.GET["first"]), int(request.GET["last"])
    except (KeyError, ValueError):
        return HttpResponseBadRequest(
            "first and last are the ids of a run's first and last reads", content_type=PLAIN
        )
    good_after, after = _place(request, "after")
    if not good_after:
        return HttpResponseBadRequest(
            "after is a place an earlier answer gave: <µs>.<id>", content_type=PLAIN
        )
    ends = eventlog.events_by_id([first_id, last_id])
    first, last = ends.get(first_id), ends.get(last_id)
    if (
        first is None
        or last is None
        or first.task_key != task_key
        or last.task_key != task_key
        or first.source != last.source
        or first.at is None
    ):
        raise Http404("no such run of reads in this task")
    start = after or (cursor_of(first)[0], first.id - 1)
    records = outline.run_members(
        task_key, first.source, start, cursor_of(last), outline.MAX_RUN_MEMBERS + 1
    )
    more = len(records) > outline.MAX_RUN_MEMBERS
    records = records[: outline.MAX_RUN_MEMBERS]
    views = part_views(task_key, [first, *records])  # the first for the run's signature
    signature = read_signature(views[0]) if views else None
    members = [v for v in views[1:] if read_signature(v) == signature]
    html = "".join(event_html(v, inline_fields=False) for v in members)
    if more and records:
        url = reverse("dashboard:read-run", args=[task_key])
        query = f"first={first_id}&last={last_id}&after={format_cursor(cursor_of(records[-1]))}"
        html += (
            f'<li class="run-more" data-url="{escape(url)}?{escape(query)}">'
            '<button type="button">Show more of these reads</button></li>'
        )
    return HttpResponse(html)


MAX_GROUP_COMMITS = 5000  # of a group the outline opens, per request
MAX_OUTLINE_COMMITS = 50_000  # of the rest of the outline's list, per request


@require_GET
def outline_commits(request: HttpRequest, task_key: str) -> HttpResponse:
    """The commits of a group of the outline (``after``, excluded, to ``until``), as its
    list items; past ``MAX_GROUP_COMMITS``, a last item says how to see the rest."""
    good_after, after = _place(request, "after")
    good_until, until = _place(request, "until")
    if after is None or until is None or not (good_after and good_until):
        return HttpResponseBadRequest(
            "after and until are places the outline gave: <µs>.<id>", content_type=PLAIN
        )
    grouped = request.GET.get("grouped") == "1"  # the rest of the outline's list
    limit = MAX_OUTLINE_COMMITS if grouped else MAX_GROUP_COMMITS
    records = outline.commits_between(task_key, after, until, limit + 1)
    if grouped:
        url = reverse("dashboard:outline-commits", args=[task_key])
        html = commit_items(records[:limit], url)
    else:
        html = "".join(commit_item(r) for r in records[:limit])
    if len(records) > limit:
        html += (
            f"<li>… the first {limit:,} shown; the rest are on the timeline and in its JSON.</li>"
        )
    return HttpResponse(html)
