"""The worker's actor, run by ``python manage.py rundramatiq``."""

from __future__ import annotations

import logging

import dramatiq
from django.conf import settings

from jobs import services
from jobs.models import Job

logger = logging.getLogger(__name__)


@dramatiq.actor(queue_name=settings.JOBS_QUEUE, max_retries=0)
def run_job(job_id: int) -> None:
    try:
        job = services.start(job_id)
    except Job.DoesNotExist:
        logger.warning("job %s does not exist; dropping its message", job_id)
        return
    try:
        output = services.summarise(job)
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        services.fail(job, str(exc))
        return
    services.complete(job, output)
