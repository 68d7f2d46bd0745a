from __future__ import annotations

import logging

from django.core.cache import cache
from django.http import HttpRequest, JsonResponse

from clientjobs.models import Job
from clientjobs.tasks import run_job
from lifecycle.client.django import read_model, report_cached, version_of

logger = logging.getLogger(__name__)


def detail(request: HttpRequest, job_id: int) -> JsonResponse:
    try:
        job = read_model(Job.objects, job_id)
    except Job.DoesNotExist:
        return JsonResponse({"error": "no such job"}, status=404)
    # The payload is a JSONField: a dict, whatever the driver and its loaders
    return JsonResponse({"id": job.pk, "status": job.status, "kind": job.payload.get("kind")})


def family(request: HttpRequest, job_id: int) -> JsonResponse:
    job = read_model(Job.objects.select_related("parent"), job_id)
    parent = job.parent.status if job.parent else None
    return JsonResponse({"id": job.pk, "status": job.status, "parent": parent})


def broken(request: HttpRequest, job_id: int) -> JsonResponse:
    job = read_model(Job.objects, job_id)
    logger.warning("job %s: the view is about to fail", job.pk)
    raise RuntimeError("the view broke after its read")


def status(request: HttpRequest, job_id: int) -> JsonResponse:
    key = f"status:{job_id}"
    cached = cache.get(key)
    if cached is not None:
        answer, version = cached
        report_cached(job_id, version)
        return JsonResponse(answer)
    job = read_model(Job.objects, job_id)
    answer = {"id": job.pk, "status": job.status}
    cache.set(key, (answer, version_of(job)), 60)
    return JsonResponse(answer)


def start(request: HttpRequest, job_id: int) -> JsonResponse:
    run_job.send(job_id)
    logger.warning("job %s: started by hand", job_id)
    return JsonResponse({"id": job_id}, status=202)
