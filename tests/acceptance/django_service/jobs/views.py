"""The jobs API: plain Django views answering JSON.

- ``POST /jobs`` ``{...payload}``: creates a job; its message is sent once the request's
  transaction commits. 201 with the job.
- ``POST /jobs/priority``: the same for the fast lane, which sends the message at once
  (BUG: inside the request's transaction, before the job's row is committed).
- ``GET /jobs/<id>``: the job, read through the ORM with its version.
- ``GET /jobs/<id>/status``: its status for polling clients, cached for two seconds to spare
  the database (BUG: it keeps answering the old status after the job finished).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from jobs import services
from jobs.models import Job
from jobs.tasks import run_job
from lifecycle.client.django import read_model, report_cached, version_of

STATUS_TTL = 2  # seconds a status answer is cached


def payload_of(request: HttpRequest) -> dict[str, Any] | None:
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


@csrf_exempt
@require_POST
def create(request: HttpRequest) -> JsonResponse:
    payload = payload_of(request)
    if payload is None:
        return JsonResponse({"error": "the body must be a JSON object"}, status=400)
    job = services.create_job(payload)
    transaction.on_commit(lambda: run_job.send(job.id))
    return JsonResponse(job.as_json(), status=201)


@csrf_exempt
@require_POST
def create_priority(request: HttpRequest) -> JsonResponse:
    payload = payload_of(request)
    if payload is None:
        return JsonResponse({"error": "the body must be a JSON object"}, status=400)
    job = services.create_job(payload)
    # BUG: sent inside the request's transaction, which commits only when the view returns:
    # the worker can get the message before the job's row exists for it.
    run_job.send(job.id)
    services.notify_watchers(job)
    return JsonResponse(job.as_json(), status=201)


@require_GET
def detail(request: HttpRequest, job_id: int) -> JsonResponse:
    try:
        job = read_model(Job.objects, job_id)
    except Job.DoesNotExist:
        return JsonResponse({"error": f"no job {job_id}"}, status=404)
    return JsonResponse(job.as_json())


@require_GET
def status(request: HttpRequest, job_id: int) -> JsonResponse:
    key = f"jobs:status:{job_id}"
    cached = cache.get(key)
    if cached is not None:
        answer, version = cached
        report_cached(job_id, version)
        return JsonResponse(answer)
    try:
        job = read_model(Job.objects, job_id)
    except Job.DoesNotExist:
        return JsonResponse({"error": f"no job {job_id}"}, status=404)
    answer = {"id": job.pk, "status": job.status}
    cache.set(key, (answer, version_of(job)), STATUS_TTL)
    return JsonResponse(answer)
