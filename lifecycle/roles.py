"""Per-process instrumentation: what each process of the stack reports about itself."""

from __future__ import annotations

from lifecycle.capture.logs import install_log_handler


def install_instrumentation(role: str) -> None:
    """Publish the WARNING+ log records emitted while handling a task as its events."""
    install_log_handler(role)
