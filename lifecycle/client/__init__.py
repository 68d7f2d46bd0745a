"""The client an observed application imports: publisher, log handler, read reporting and
the Dramatiq middleware. It imports no Django and nothing else of the inspector.

    from lifecycle.client import report_read, task_context, install_log_handler, carry
    from lifecycle.client import LifecycleEvents     # the Dramatiq middleware: needs dramatiq

``LifecycleEvents`` is imported on first use, so that a process without Dramatiq (an API)
can use the rest.
"""

from typing import Any

from lifecycle.client.context import carry, current_attempt, current_task, task_context
from lifecycle.client.logs import LifecycleLogHandler, install_log_handler
from lifecycle.client.messages import make_message
from lifecycle.client.publisher import Publisher, get_publisher
from lifecycle.client.reads import aread_object, aread_row, read_object, read_row, report_read

__all__ = [
    "LifecycleEvents",
    "LifecycleLogHandler",
    "Publisher",
    "carry",
    "current_attempt",
    "current_task",
    "get_publisher",
    "install_log_handler",
    "aread_object",
    "aread_row",
    "make_message",
    "read_object",
    "read_row",
    "report_read",
    "task_context",
]


def __getattr__(name: str) -> Any:
    if name == "LifecycleEvents":
        from lifecycle.client.dramatiq_middleware import LifecycleEvents

        return LifecycleEvents
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
