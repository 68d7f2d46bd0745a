"""A publisher that keeps what it was given, for the tests of what the client publishes."""

from __future__ import annotations

from typing import Any


class Published:
    """Stands in for the publisher: ``messages`` holds what would have been sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def flush(self, timeout: float = 5.0) -> bool:
        return True
