"""The client an observed application imports: publisher, log handler, read reporting and
the Dramatiq middleware. It imports no Django and nothing else of the inspector.

    from lifecycle.client import report_read, task_context, install_log_handler
    from lifecycle.client.dramatiq import LifecycleEvents   # needs dramatiq
"""

from lifecycle.client.context import current_task, task_context
from lifecycle.client.logs import LifecycleLogHandler, install_log_handler
from lifecycle.client.messages import make_message
from lifecycle.client.publisher import Publisher, get_publisher
from lifecycle.client.reads import report_read

__all__ = [
    "LifecycleLogHandler",
    "Publisher",
    "current_task",
    "get_publisher",
    "install_log_handler",
    "make_message",
    "report_read",
    "task_context",
]
