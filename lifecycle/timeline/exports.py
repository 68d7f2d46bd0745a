"""Heavy exports at a time, per process: a long history's OTLP trace or JSON page.

Each reads thousands of events; a few at once are enough to keep a web process busy, so
beyond ``LIFECYCLE_EXPORTS`` the API answers 429 with ``Retry-After`` (README: JSON API)
instead of queueing work it cannot serve in time.
"""

from __future__ import annotations

import threading

from django.conf import settings

from lifecycle.runtime import allocator

RETRY_AFTER = 5  # seconds a refused client is asked to wait

_lock = threading.Lock()
_running = 0


class Slot:
    """One export's place; ``release`` gives it back (once, however often it is called)."""

    def __init__(self) -> None:
        self._held = True
        allocator.begin_heavy()

    def release(self) -> None:
        global _running
        with _lock:
            if not self._held:
                return
            self._held = False
            _running -= 1
        allocator.end_heavy()  # the memory it freed goes back once no heavy reader runs


def limit() -> int:
    return max(1, int(getattr(settings, "LIFECYCLE_EXPORTS", 4)))


def take() -> Slot | None:
    """A slot, or None when ``limit()`` exports already run in this process."""
    global _running
    with _lock:
        if _running >= limit():
            return None
        _running += 1
        return Slot()


def running() -> int:
    with _lock:
        return _running
