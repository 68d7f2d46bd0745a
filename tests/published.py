"""A publisher that keeps what it was given, for the tests of what the client publishes."""

from __future__ import annotations

from typing import Any


class Published:
    """Stands in for the publisher: ``messages`` holds what would have been sent (each
    message's ticket, its number from 1); ``waits``, the confirms waited for and how long."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.waits: list[tuple[int | None, float]] = []

    def publish(self, message: dict[str, Any]) -> int:
        self.messages.append(message)
        return len(self.messages)

    def wait(self, ticket: int | None, timeout: float) -> bool:
        self.waits.append((ticket, timeout))
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        return True
