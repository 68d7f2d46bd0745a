"""Dramatiq middleware that publishes broker steps as lifecycle events (capture issue)."""

from dramatiq import Middleware


class LifecycleEvents(Middleware):
    """Placeholder until the capture issue lands: publishes nothing yet."""
