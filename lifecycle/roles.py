"""Per-process instrumentation: what each process of the stack reports about itself."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def install_instrumentation(role: str) -> None:
    """Publish WARNING+ log records of the current task as events (capture issue)."""
    try:
        from lifecycle.capture.logs import install_log_handler
    except ImportError:  # capture not installed in this build
        return
    install_log_handler(role)
