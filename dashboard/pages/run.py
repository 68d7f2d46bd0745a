"""Run (``run.html``): the verdict, the body it submitted, the task's timeline, Resubmit,
Edit and run, and Compare with…; and the form posts that start a run (from the scenario
panel, Resubmit, or Edit and run)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import needs
from dashboard.pages.compare import compare_candidates
from dashboard.pages.timeline import page_context
from dashboard.runs import start_run as start_run_as
from lifecycle.models import Run
from lifecycle.runtime.database import off_thread
from lifecycle.scenarios import probe
from lifecycle.scenarios.catalogue import (
    BodyError,
    Scenario,
    UnknownScenario,
    find_scenario,
    get_scenario,
    parse_body,
)
from lifecycle.timeline.page import read_page

MAX_TOKEN = 64


def body_text(body: Any) -> str:
    """A body as the editor shows it: indented JSON ("" for a run that sent none)."""
    return "" if body is None else json.dumps(body, indent=2, ensure_ascii=False)


def _page(
    request: HttpRequest, run: Run, edited: str | None = None, error: str = "", status: int = 200
) -> HttpResponse:
    context = (
        page_context(read_page(run.task_key, run.expected)) if run.task_key else {"live": False}
    )
    if run.state != Run.State.DONE:
        context["live"] = True
    return render(
        request,
        "dashboard/run.html",
        {
            **context,
            "run": run,
            "scenario": find_scenario(run.scenario),
            "body_text": body_text(run.body),
            "edited_text": body_text(run.body) if edited is None else edited,
            "edit_error": error,
            "resubmits": list(run.resubmits.order_by("id")),
            "candidates": compare_candidates(run) if run.task_key else [],
            "token": uuid.uuid4().hex,
        },
        status=status,
    )


@require_GET
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    return _page(request, probe.expire_if_abandoned(get_object_or_404(Run, pk=run_id)))


def _to_run_page(run: Run) -> HttpResponse:
    return HttpResponseRedirect(reverse("dashboard:run", args=[run.id]), status=303)


def _token(request: HttpRequest) -> str | None:
    return request.POST.get("token", "")[:MAX_TOKEN] or None


# Async: the probe's HTTP submit goes to this same server and must not wait behind this
# request on Django's one thread for sync views.
@require_POST
@needs("run")
async def start_run(request: HttpRequest, name: str) -> HttpResponse:
    try:
        scenario = get_scenario(name)
    except UnknownScenario as exc:
        raise Http404(str(exc)) from None
    return await _start(request, scenario)


async def _start(request: HttpRequest, scenario: Scenario, old: Run | None = None) -> HttpResponse:
    """Start the run (again, for ``old``) once per form token: its page, or why not."""
    try:
        run = await start_run_as(request, scenario, old, _token(request))
    except probe.Unavailable as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
    return _to_run_page(run)


async def _old_run(run_id: int) -> tuple[Run, Scenario]:
    old = await Run.objects.filter(pk=run_id).afirst()
    if old is None:
        raise Http404(f"no run {run_id}")
    scenario = find_scenario(old.scenario)
    if scenario is None:
        raise Http404(f"scenario {old.scenario!r} is no longer in the scenario files")
    return old, scenario


@require_POST
@needs("run")
async def resubmit(request: HttpRequest, run_id: int) -> HttpResponse:
    old, scenario = await _old_run(run_id)
    return await _start(request, scenario, old)


@require_POST
@needs("run")
async def edit_and_run(request: HttpRequest, run_id: int) -> HttpResponse:
    """Start the run again with the body from the editor; a bad body comes back to the
    editor with the reason, as typed."""
    old, scenario = await _old_run(run_id)
    text = request.POST.get("body", "")
    try:
        body = parse_body(text) if text.strip() else None
    except BodyError as exc:
        return await off_thread(_page)(request, old, text, f"Not started: {exc}", 400)
    run = await start_run_as(request, scenario, old, _token(request), body=body)
    return _to_run_page(run)
