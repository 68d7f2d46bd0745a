"""Run (``run.html``): the verdict, the task's timeline, Resubmit and Compare with…; and the
form posts that start a run (from the scenario panel, or Resubmit)."""

from __future__ import annotations

import uuid

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dashboard.pages.compare import compare_candidates
from dashboard.pages.timeline import timeline_context
from lifecycle import probe
from lifecycle.http import base_url
from lifecycle.models import Run
from lifecycle.scenarios import CATALOGUE, UnknownScenario, get_scenario

MAX_TOKEN = 64


@require_GET
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    run = probe.expire_if_abandoned(get_object_or_404(Run, pk=run_id))
    context = timeline_context(run.task_key, run.expected) if run.task_key else {"live": False}
    if run.state != Run.State.DONE:
        context["live"] = True
    return render(
        request,
        "dashboard/run.html",
        {
            **context,
            "run": run,
            "scenario": CATALOGUE.get(run.scenario),
            "resubmits": list(run.resubmits.order_by("id")),
            "candidates": compare_candidates(run) if run.task_key else [],
            "token": uuid.uuid4().hex,
        },
    )


def _to_run_page(run: Run) -> HttpResponse:
    return HttpResponseRedirect(reverse("dashboard:run", args=[run.id]), status=303)


# Async: the probe's HTTP submit goes to this same server and must not wait behind this
# request on Django's one thread for sync views.
@require_POST
async def start_run(request: HttpRequest, name: str) -> HttpResponse:
    try:
        scenario = get_scenario(name)
    except UnknownScenario as exc:
        raise Http404(str(exc)) from None
    token = request.POST.get("token", "")[:MAX_TOKEN] or None
    run = await sync_to_async(probe.start, thread_sensitive=False)(
        scenario, base_url(request), None, token
    )
    return _to_run_page(run)


@require_POST
async def resubmit(request: HttpRequest, run_id: int) -> HttpResponse:
    old = await Run.objects.filter(pk=run_id).afirst()
    if old is None:
        raise Http404(f"no run {run_id}")
    token = request.POST.get("token", "")[:MAX_TOKEN] or None
    run = await sync_to_async(probe.start, thread_sensitive=False)(
        get_scenario(old.scenario), base_url(request), old, token
    )
    return _to_run_page(run)
