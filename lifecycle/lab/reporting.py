"""What the lab API reports about itself: every read it serves, as an ``api`` event.

Reporting never fails a request and never holds it: the publisher only queues.
"""

from __future__ import annotations

import logging

from lifecycle import events
from lifecycle.capture.context import task_context
from lifecycle.capture.publisher import get_publisher

logger = logging.getLogger(__name__)

__all__ = ["report_read", "task_context"]


def report_read(
    *,
    task: str,
    status: str,
    xmin: int | None,
    snapshot: str | None,
    client: str | None,
    path: str,
) -> None:
    try:
        get_publisher().publish(
            events.make_message(
                source="api",
                kind="read",
                task=task,
                status=status,
                body={
                    "xmin": xmin,
                    "snapshot": snapshot,
                    "client": client,
                    "path": path,
                    "http_status": 200,
                },
            )
        )
    except Exception:  # instrumentation must never break the observed API
        logger.debug("could not report a read of %s", task, exc_info=True)
