"""The client an observed application imports: publisher, log handler, read reporting and
the Dramatiq middleware. It imports no Django and nothing else of the inspector; only
``lifecycle.client.django``, which a Django application imports by name, imports Django.

    from lifecycle.client import report_read, task_context, install_log_handler, carry
    from lifecycle.client import LifecycleEvents     # the Dramatiq middleware: needs dramatiq
    from lifecycle.client.django import read_model   # Django's helpers: needs Django

``LifecycleEvents`` is imported on first use, so that a process without Dramatiq (an API)
can use the rest.
"""

from typing import Any

from lifecycle.client.context import carry, current_attempt, current_task, task_context
from lifecycle.client.logs import LifecycleLogHandler, install_log_handler
from lifecycle.client.messages import make_message
from lifecycle.client.publisher import Publisher, get_publisher
from lifecycle.client.reads import (
    ReadVersion,
    aread_object,
    aread_row,
    deferred_reads,
    read_object,
    read_row,
    report_cached,
    report_read,
)

__all__ = [
    "LifecycleEvents",
    "LifecycleLogHandler",
    "Publisher",
    "ReadVersion",
    "carry",
    "current_attempt",
    "current_task",
    "get_publisher",
    "install_log_handler",
    "aread_object",
    "aread_row",
    "deferred_reads",
    "make_message",
    "read_object",
    "read_row",
    "report_cached",
    "report_read",
    "task_context",
]


def __getattr__(name: str) -> Any:
    if name == "LifecycleEvents":
        from lifecycle.client.dramatiq_middleware import LifecycleEvents

        return LifecycleEvents
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
