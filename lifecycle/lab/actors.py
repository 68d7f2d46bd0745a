"""The lab's Dramatiq actor. Imported only after the broker is set (lifecycle.apps)."""

from __future__ import annotations

import dramatiq
from django.conf import settings
from django.db import close_old_connections
from dramatiq.middleware import CurrentMessage

from lifecycle.lab import work


@dramatiq.actor(
    queue_name=settings.LAB_QUEUE,
    max_retries=5,
    min_backoff=200,
    max_backoff=1000,
)
def run_task(task_id: str) -> None:
    message = CurrentMessage.get_current_message()
    attempt = (message.options.get("retries", 0) if message else 0) + 1
    close_old_connections()
    try:
        work.execute(task_id, attempt)
    finally:
        close_old_connections()
