"""Publish WARNING+ log records emitted while a task is current as ``log`` events.

So the error a worker caught and logged sits on the task's timeline next to the status it
committed anyway. Records outside a task (``current_task`` unset) are ignored. A record
logged during a Dramatiq attempt names it (``message_id``, ``attempt``), so the checker ties
it to that attempt even when another thread logged it (an ``async def`` actor's event loop,
``asyncio.to_thread``, a pool fed with ``carry``).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback

from lifecycle.client import config, messages
from lifecycle.client import publisher as publisher_module
from lifecycle.client.context import attempt_fields, current_task
from lifecycle.client.publisher import Publisher, get_publisher

MAX_EXCEPTION_CHARS = 8 * 1024
MAX_MESSAGE_CHARS = 4 * 1024
# Records from these loggers are never published: the publisher's own trouble (and pika's)
# would otherwise publish about itself, over and over.
IGNORED_LOGGERS = ("pika", "lifecycle.client")
KIND_BY_LEVEL = {"WARNING": "warning", "ERROR": "error", "CRITICAL": "critical"}


FLUSH_TIMEOUT = 3.0  # seconds logging.shutdown() waits for a RabbitMQ out of reach


class LifecycleLogHandler(logging.Handler):
    """A handler that turns a task's WARNING+ records into ``log`` events.

    Made by ``install_log_handler()``, or by Django's ``LOGGING`` (dictConfig), in every
    process: ``{"class": "lifecycle.client.LifecycleLogHandler"}``. Its role is the
    argument, else ``LIFECYCLE_PROCESS_ROLE`` (``worker``, ``api``) when it is made."""

    def __init__(
        self,
        role: str | None = None,
        *,
        level: int = logging.WARNING,
        publisher: Publisher | None = None,
    ) -> None:
        super().__init__(level)
        self.role = role or os.environ.get("LIFECYCLE_PROCESS_ROLE") or "unknown"
        self._publisher = publisher
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        task = current_task.get()
        if task is None or record.name.startswith(IGNORED_LOGGERS):
            return
        if getattr(self._busy, "active", False):
            return  # something logged while we were publishing: do not recurse
        self._busy.active = True
        try:
            publisher = self._publisher or get_publisher()
            publisher.publish(
                messages.make_message(
                    source="log",
                    kind=self.kind(record),
                    task=config.task_key(task),
                    body=self.body(record),
                )
            )
        except Exception:
            self.handleError(record)
        finally:
            self._busy.active = False

    def flush(self) -> None:
        """Wait (a few seconds at most) until the records published so far were sent:
        ``logging.shutdown()`` calls it, so a process that ends on purpose (``os._exit``
        after a last warning) does not lose that warning in the publisher's queue."""
        publisher = self._publisher or publisher_module.current()
        if publisher is None:  # nothing was ever published: nothing to wait for
            return
        try:
            publisher.flush(timeout=publisher_module.shutdown_flush(), unreachable=FLUSH_TIMEOUT)
        except Exception:  # instrumentation never fails the application
            pass

    @staticmethod
    def kind(record: logging.LogRecord) -> str:
        if record.levelno >= logging.CRITICAL:
            return "critical"
        if record.levelno >= logging.ERROR:
            return "error"
        return KIND_BY_LEVEL.get(record.levelname, "warning")

    def body(self, record: logging.LogRecord) -> dict[str, object]:
        exception = None
        if record.exc_info and record.exc_info[0] is not None:
            exception = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            exception = record.exc_text
        if exception and len(exception) > MAX_EXCEPTION_CHARS:
            # Keep the end: the innermost frame and the exception itself are there.
            exception = "…" + exception[-MAX_EXCEPTION_CHARS:]
        return {
            "logger": record.name,
            "level": record.levelname,
            "message": record.getMessage()[:MAX_MESSAGE_CHARS],
            "exception": exception,
            "stack": record.stack_info[-MAX_EXCEPTION_CHARS:] if record.stack_info else None,
            "where": f"{record.pathname}:{record.lineno}",
            "process_name": record.processName,
            "pid": record.process,
            "thread": record.threadName,
            "process_role": self.role,
            # The attempt it belongs to (message_id, attempt), whatever thread ran it.
            **attempt_fields(),
        }


_installed: LifecycleLogHandler | None = None
_install_lock = threading.Lock()


def install_log_handler(role: str | None = None) -> LifecycleLogHandler:
    """Add the handler to the root logger, once per process; returns it."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = LifecycleLogHandler(role)
            logging.getLogger().addHandler(_installed)
        elif role:
            _installed.role = role
        return _installed
