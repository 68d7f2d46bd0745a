"""The inspector's JSON API: the scenario catalogue and scenario runs."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from lifecycle import checks, probe
from lifecycle.models import Run
from lifecycle.scenarios import CATALOGUE, UnknownScenario, get_scenario


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


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
        "resubmit_of": run.resubmit_of_id,
        "resubmits": list(run.resubmits.values_list("id", flat=True)),
        "findings": checks.findings_json(run.task_key) if run.task_key else [],
        "url": request.build_absolute_uri(reverse("lifecycle:run", args=[run.id])),
        "api_url": request.build_absolute_uri(reverse("lifecycle:api-run", args=[run.id])),
    }


@require_GET
def scenarios(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"scenarios": [s.as_json() for s in CATALOGUE.values()]})


def base_url(request: HttpRequest) -> str:
    """The probe talks to the lab API of the server that received the request."""
    return request.build_absolute_uri("/").rstrip("/")


# Async so that the HTTP submit the probe makes to this same server is not queued behind
# this request on Django's single thread for sync views.
@csrf_exempt
@require_POST
async def start_run(request: HttpRequest, name: str) -> JsonResponse:
    try:
        scenario = get_scenario(name)
    except UnknownScenario as exc:
        return error(404, str(exc))
    run = await sync_to_async(probe.start, thread_sensitive=False)(scenario, base_url(request))
    body = await sync_to_async(run_json, thread_sensitive=False)(run, request)
    return JsonResponse(body, status=201)


@csrf_exempt
@require_POST
async def resubmit_run(request: HttpRequest, run_id: int) -> JsonResponse:
    old = await Run.objects.filter(pk=run_id).afirst()
    if old is None:
        return error(404, f"no run {run_id}")
    run = await sync_to_async(probe.start, thread_sensitive=False)(
        get_scenario(old.scenario), base_url(request), old
    )
    body = await sync_to_async(run_json, thread_sensitive=False)(run, request)
    return JsonResponse(body, status=201)


@require_GET
def run_detail(request: HttpRequest, run_id: int) -> JsonResponse:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return error(404, f"no run {run_id}")
    return JsonResponse(run_json(probe.expire_if_abandoned(run), request))
