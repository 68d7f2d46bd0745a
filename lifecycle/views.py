"""Dashboard pages: rendered fully on the server, so a permalink works with JavaScript off."""

from __future__ import annotations

import json
import uuid

from asgiref.sync import sync_to_async
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from lifecycle import checks, probe, queries
from lifecycle.checker import KINDS
from lifecycle.findings import finding_views, pin
from lifecycle.models import Run
from lifecycle.render import INLINE_FIELDS_LIMIT, events_html, fields_json
from lifecycle.scenarios import CATALOGUE, Scenario, UnknownScenario, get_scenario
from lifecycle.timeline import LANES, TERMINAL, TimelineBuilder, current_status, in_time_order


def _page(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    page = _page(request)
    wanted = request.GET.get("findings", "")
    if wanted and wanted != "any" and wanted not in KINDS:
        wanted = ""
    if wanted:
        tasks, has_next = queries.tasks_with_findings(None if wanted == "any" else wanted, page)
    else:
        tasks, has_next = queries.recent_tasks(page)
    checked = checks.refresh([t.task_key for t in tasks])
    for task in tasks:
        task.findings = checked[task.task_key].kinds if task.task_key in checked else []
    return render(
        request,
        "lifecycle/home.html",
        {
            "tasks": tasks,
            "page": page,
            "has_next": has_next,
            "wanted": wanted,
            "kinds": KINDS,
            "scenarios": list(CATALOGUE.values()),
            "token": uuid.uuid4().hex,
        },
    )


def timeline_context(task_key: str, expected: str | None = None) -> dict:
    records = in_time_order(queries.task_events(task_key))
    views = TimelineBuilder().extend(records)
    findings = checks.stored_findings(task_key, records, expected)
    pin(views, findings)
    status = current_status(records)
    return {
        "task_key": task_key,
        "events": views,
        "events_html": mark_safe(
            events_html(views, inline_fields=len(views) <= INLINE_FIELDS_LIMIT)
        ),
        "findings": finding_views(findings, records),
        "finding_objects": findings,
        "expected": expected,
        "lanes": LANES,
        "status": status,
        "event_count": len(records),
        "live": status not in TERMINAL or _recent(records),
    }


def _recent(records) -> bool:
    """A task that just finished may still get events (late reads, a redelivery)."""
    from django.utils import timezone

    return (
        bool(records)
        and records[-1].received_at is not None
        and (timezone.now() - records[-1].received_at).total_seconds() < 600
    )


@require_GET
def task_page(request: HttpRequest, task_key: str) -> HttpResponse:
    context = timeline_context(task_key, checks.expected_for(task_key))
    runs = list(Run.objects.filter(task_key=task_key).order_by("id"))
    if not context["events"] and not runs:
        raise Http404(f"no event for task {task_key}")
    return render(request, "lifecycle/task.html", {**context, "runs": runs})


@require_GET
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    run = probe.expire_if_abandoned(get_object_or_404(Run, pk=run_id))
    context = timeline_context(run.task_key, run.expected) if run.task_key else {"live": False}
    if run.state != Run.State.DONE:
        context["live"] = True
    return render(
        request,
        "lifecycle/run.html",
        {
            **context,
            "run": run,
            "scenario": CATALOGUE.get(run.scenario),
            "resubmits": list(run.resubmits.order_by("id")),
            "token": uuid.uuid4().hex,
        },
    )


@require_GET
def scenario_page(request: HttpRequest, name: str) -> HttpResponse:
    try:
        scenario = get_scenario(name)
    except UnknownScenario as exc:
        raise Http404(str(exc)) from None
    runs = list(Run.objects.filter(scenario=name).order_by("-id")[:200])
    total = Run.objects.filter(scenario=name, state=Run.State.DONE).count()
    failed = Run.objects.filter(scenario=name, verdict=Run.Verdict.FAIL).count()
    return render(
        request,
        "lifecycle/scenario.html",
        {
            "scenario": scenario,
            "runs": runs,
            "total": total,
            "failed": failed,
            "failure_rate": 100 * failed / total if total else 0,
            "config_json": json.dumps(scenario.config),
            "token": uuid.uuid4().hex,
        },
    )


def _start(scenario: Scenario, base_url: str, token: str, resubmit_of: Run | None) -> Run:
    """Start a run once per form token: a double click lands on the same run."""
    if token:
        existing = Run.objects.filter(request_token=token).first()
        if existing:
            return existing
    try:
        run = probe.create_run(scenario, base_url, resubmit_of, request_token=token or None)
    except IntegrityError:  # the other click of a double click won the race
        return Run.objects.get(request_token=token)
    if probe.submit(run):
        probe.follow_in_background(run)
    return run


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


# Async: the probe's HTTP submit goes to this same server and must not wait behind this
# request on Django's one thread for sync views.
@require_POST
async def start_run(request: HttpRequest, name: str) -> HttpResponse:
    try:
        scenario = get_scenario(name)
    except UnknownScenario as exc:
        raise Http404(str(exc)) from None
    token = request.POST.get("token", "")[:64]
    run = await sync_to_async(_start, thread_sensitive=False)(
        scenario, _base_url(request), token, None
    )
    return HttpResponseRedirect(reverse("lifecycle:run", args=[run.id]), status=303)


@require_POST
async def resubmit(request: HttpRequest, run_id: int) -> HttpResponse:
    old = await Run.objects.filter(pk=run_id).afirst()
    if old is None:
        raise Http404(f"no run {run_id}")
    token = request.POST.get("token", "")[:64]
    run = await sync_to_async(_start, thread_sensitive=False)(
        get_scenario(old.scenario), _base_url(request), token, old
    )
    return HttpResponseRedirect(reverse("lifecycle:run", args=[run.id]), status=303)


@require_GET
def timeline_json(request: HttpRequest, task_key: str) -> JsonResponse:
    context = timeline_context(task_key, checks.expected_for(task_key))
    if not context["events"]:
        return JsonResponse({"error": f"no event for task {task_key}"}, status=404)
    return JsonResponse(
        {
            "task": task_key,
            "status": context["status"],
            "expected": context["expected"],
            "order": "time at source, then event id",
            "findings": [f.as_json() for f in context["finding_objects"]],
            "events": [view.as_json() for view in context["events"]],
        }
    )


@require_GET
def event_fields(request: HttpRequest, event_id: int) -> JsonResponse:
    """One event's fields, for the popover of a long timeline (its cards carry none)."""
    event = queries.event(event_id)
    if event is None:
        return JsonResponse({"error": f"no event {event_id}"}, status=404)
    return JsonResponse({"event": event.as_json(), "fields": fields_json(event)})
