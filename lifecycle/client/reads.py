"""Reads an API serves, reported as ``api`` events: the status returned and, where the API
can say it, the row version it read (``xmin``) and its snapshot (``pg_current_snapshot()``).

Reporting never fails a request and never holds it: the publisher only queues.
"""

from __future__ import annotations

import logging

from lifecycle.client import messages
from lifecycle.client.publisher import get_publisher

logger = logging.getLogger(__name__)


def report_read(
    task: str,
    status: str | None,
    *,
    xmin: int | None = None,
    snapshot: str | None = None,
    client: str | None = None,
    path: str | None = None,
    http_status: int = 200,
) -> None:
    """Publish one read of ``task`` that returned ``status``; never raises."""
    try:
        get_publisher().publish(
            messages.make_message(
                source="api",
                kind="read",
                task=str(task),
                status=status,
                body={
                    "xmin": xmin,
                    "snapshot": snapshot,
                    "client": client,
                    "path": path,
                    "http_status": http_status,
                },
            )
        )
    except Exception:  # instrumentation must never break the observed API
        logger.debug("could not report a read of %s", task, exc_info=True)
