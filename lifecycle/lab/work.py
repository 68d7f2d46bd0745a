"""What a lab task does, and the worker's handling of it, fault switches included.

Each fault switch is written the way the bug looks in real code, so that the inspector has
the real thing to catch: no simulated events, only real commits, reads and broker steps.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from lifecycle.lab.models import Task

logger = logging.getLogger("lifecycle.lab.worker")

# Exit status of a worker that "dies before the ack"; the supervisor restarts it.
REDELIVERY_EXIT_CODE = 3


class LabError(Exception):
    """The work failed for good: the task ends FAILED."""


class TransientError(Exception):
    """The work failed this time; Dramatiq retries the message."""


def do_work(config: dict[str, Any], attempt: int) -> dict[str, Any]:
    """Sum the numbers of ``input``; fail on a non-number; fail the first ``fail_times``."""
    if config.get("sleep"):
        time.sleep(float(config["sleep"]))
    if attempt <= int(config.get("fail_times", 0)):
        raise TransientError(f"transient failure on attempt {attempt}")
    numbers = config.get("input", [])
    for index, value in enumerate(numbers):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LabError(f"invalid config: input[{index}] is {value!r}, not a number")
    return {"sum": sum(numbers), "count": len(numbers)}


def _commit_status(task_id: str, status: str, **fields: Any) -> None:
    with transaction.atomic():
        Task.objects.filter(pk=task_id).update(status=status, updated_at=timezone.now(), **fields)


def execute(task_id: str, attempt: int = 1) -> None:
    """Run one delivery of a lab task's message."""
    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        # With enqueue_before_commit the row is not visible yet: the message is lost.
        logger.warning("task %s not found; dropping the message", task_id)
        return
    config = task.config

    with transaction.atomic():
        Task.objects.filter(pk=task_id).update(
            status=Task.Status.RUNNING,
            started_at=timezone.now(),
            updated_at=timezone.now(),
            executions=F("executions") + 1,
        )
    first_execution = task.executions == 0

    try:
        output = do_work(config, attempt)
    except TransientError as exc:
        # Back to PENDING while Dramatiq waits to retry: the lifecycle allows it.
        _commit_status(task_id, Task.Status.PENDING, error=str(exc))
        raise
    except LabError as exc:
        if config.get("swallowed_error"):
            logger.exception("task %s failed: %s", task_id, exc)
            _commit_status(task_id, Task.Status.COMPLETED, output=None, finished_at=timezone.now())
        elif config.get("missing_commit"):
            _write_without_commit(task_id, Task.Status.FAILED, error=str(exc))
        elif config.get("overwrite_after_failure"):
            try:
                _commit_status(
                    task_id, Task.Status.FAILED, error=str(exc), finished_at=timezone.now()
                )
            finally:
                # The "always mark the task done" cleanup that forgets it already failed.
                time.sleep(0.2)
                _commit_status(task_id, Task.Status.COMPLETED, finished_at=timezone.now())
        else:
            _commit_status(task_id, Task.Status.FAILED, error=str(exc), finished_at=timezone.now())
        return

    if config.get("missing_commit"):
        _write_without_commit(task_id, Task.Status.COMPLETED, output=output)
        return
    _commit_status(
        task_id, Task.Status.COMPLETED, output=output, error="", finished_at=timezone.now()
    )
    if config.get("redelivery") and first_execution:
        logger.warning("task %s: worker process dies before acking its message", task_id)
        logging.shutdown()  # flushes the log handler, and so the events published so far
        os._exit(REDELIVERY_EXIT_CODE)


def _write_without_commit(task_id: str, status: str, **fields: Any) -> None:
    """Write the final status in a transaction that is never committed, then close."""
    transaction.set_autocommit(False)
    try:
        Task.objects.filter(pk=task_id).update(
            status=status, finished_at=timezone.now(), updated_at=timezone.now(), **fields
        )
    finally:
        # The session ends without COMMIT: PostgreSQL rolls the write back.
        connection.close()
