"""Heavy exports at a time, per process: a long history's OTLP trace or JSON page.

Each reads thousands of events; a few at once are enough to keep a web process busy, so
beyond ``LIFECYCLE_EXPORTS`` the API answers 429 with ``Retry-After`` (README: JSON API)
instead of queueing work it cannot serve in time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

from django.conf import settings

RETRY_AFTER = 5  # seconds a refused client is asked to wait

_lock = threading.Lock()
_running = 0


class Slot:
    """One export's place; ``release`` gives it back (once, however often it is called)."""

    def __init__(self) -> None:
        self._held = True

    def release(self) -> None:
        global _running
        with _lock:
            if not self._held:
                return
            self._held = False
            _running -= 1
            last = _running == 0
        if last:
            trim()


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def trim() -> None:
    """Give the memory the exports freed back to the system. An export of 100,000 events
    allocates and frees a few hundred MB in pieces; glibc keeps freed pieces for the process
    to reuse, and the web process's memory stayed 40 % above where it was. Once the last
    running export ends, ``malloc_trim`` returns them (a few ms; nothing elsewhere)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


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
