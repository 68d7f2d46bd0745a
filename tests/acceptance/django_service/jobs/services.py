"""What happens to a job, one atomic helper a step. They nest: under ``ATOMIC_REQUESTS`` a
view's helper runs inside the request's transaction, and ``transition`` inside its caller's,
so most writes are made in a savepoint."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import transaction

from jobs import llm
from jobs.models import Job

logger = logging.getLogger(__name__)


@transaction.atomic
def create_job(payload: dict[str, Any]) -> Job:
    return Job.objects.create(payload=payload)


@transaction.atomic
def transition(job: Job, status: str, *, also: tuple[str, ...] = ()) -> Job:
    job.status = status
    job.save(update_fields=["status", "updated_at", *also])
    return job


@transaction.atomic
def start(job_id: int) -> Job:
    job = Job.objects.select_for_update().get(pk=job_id)
    job.attempts += 1
    return transition(job, Job.Status.RUNNING, also=("attempts",))


@transaction.atomic
def complete(job: Job, output: str) -> Job:
    job.output = output
    return transition(job, Job.Status.COMPLETED, also=("output",))


@transaction.atomic
def fail(job: Job, error: str) -> Job:
    job.output = error
    return transition(job, Job.Status.FAILED, also=("output",))


def summarise(job: Job) -> str:
    """The job's work: ask the model for a summary of its payload."""
    if job.payload.get("mode") == "slow":
        time.sleep(1.0)
    try:
        return llm.complete(str(job.payload), fail=job.payload.get("mode") == "swallowed_error")
    except llm.LLMError:
        # BUG: the error is logged and swallowed; the job is marked COMPLETED with no output.
        logger.warning("LLM call failed for job %s", job.pk, exc_info=True)
        return ""


def notify_watchers(job: Job) -> None:
    """Tell the job's watchers it was submitted (a webhook that takes half a second)."""
    time.sleep(0.5)
