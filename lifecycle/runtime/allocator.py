"""glibc's allocator, told how a long-running Python server uses it.

Two calls, each a no-op where the C library is not glibc (musl, macOS):

- ``limit_arenas()``: at most ``ARENAS`` malloc arenas for the process, unless
  ``MALLOC_ARENA_MAX`` is set in its environment (glibc then reads that itself). glibc
  gives each thread that allocates at once an arena of its own, up to eight per core, and
  keeps what each one freed for that arena's reuse. The web process runs Django's views in
  a pool of threads: ten long hellos and eight exports at once left its memory 25 % above
  where it started 5 s after, against 10 % with two arenas (``python -m bench.availability``),
  for no change of its ``GET /`` p99 under those readers.
- ``trim()``: give the pages freed pieces leave empty back to the system
  (``malloc_trim``, well under a ms). ``heavy()`` runs it once the last heavy reader of
  the process ends (an export, a long page's catch-up): each allocates and frees tens of
  MB in small pieces.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ARENAS = 2
M_ARENA_MAX = -8  # glibc's malloc.h


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap the process's malloc arenas (before its threads start): True if it was set here."""
    if _LIBC is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def trim() -> None:
    """Give the memory freed pieces leave unused back to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_lock = threading.Lock()
_heavy = 0


def begin_heavy() -> None:
    global _heavy
    with _lock:
        _heavy += 1


def end_heavy() -> None:
    """One heavy reader done: ``trim()`` if it was the last one running."""
    global _heavy
    with _lock:
        _heavy -= 1
        last = _heavy == 0
    if last:
        trim()


@contextmanager
def heavy() -> Iterator[None]:
    begin_heavy()
    try:
        yield
    finally:
        end_heavy()
