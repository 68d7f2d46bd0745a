"""Which committed version of a row a read returned: the facts the checker, the timeline
and the pages share. Pure, and imports nothing of ours but the event record.

A read names its version by the row's ``xmin`` (the 32-bit part of the writer's 64-bit
transaction id) and its snapshot (``pg_current_snapshot()``). The capture records each
commit's top-level transaction id, so a row written inside a savepoint (Django's nested
``atomic()``, SQLAlchemy's ``begin_nested()``) has an ``xmin`` that no commit carries: the
subtransaction's. The snapshot settles it: of the task's commits, the newest one the
snapshot saw is the version the read should have returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lifecycle.events import EventRecord

XID_WRAP = 2**32  # a row's xmin is the 64-bit txid modulo 2**32


@dataclass(frozen=True)
class Snapshot:
    """``pg_current_snapshot()``: which transactions the reader could see."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: object) -> Snapshot | None:
        if not isinstance(text, str) or len(text) > 100_000:
            return None
        try:
            xmin, xmax, xip = text.split(":")
            return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))
        except ValueError:
            return None

    def sees(self, txid: int) -> bool:
        return txid < self.xmin or (txid < self.xmax and txid not in self.xip)


def read_xmin(e: EventRecord) -> int | None:
    """The row version an API read says it returned, if it says one."""
    xmin = e.body.get("xmin") if e.source == "api" else None
    return xmin if isinstance(xmin, int) and not isinstance(xmin, bool) else None


def read_snapshot(e: EventRecord) -> Snapshot | None:
    """The snapshot an API read was made with, if it sent one."""
    return Snapshot.parse(e.body.get("snapshot")) if e.source == "api" else None


def newest_seen(snapshot: Snapshot, txids: Sequence[int]) -> int | None:
    """Of one row's commits' transaction ids in commit order, the index of the last one
    ``snapshot`` saw (None: none).

    A snapshot that saw a commit saw every commit of the row before it (row locks order
    the row's writers), so what it saw is a prefix: found by bisection, in log time
    whatever the history's length. A snapshot that breaks the rule (a hand-made event's)
    gets an answer, never a long search."""
    lo, hi = 0, len(txids)
    while lo < hi:
        mid = (lo + hi) // 2
        if snapshot.sees(txids[mid]):
            lo = mid + 1
        else:
            hi = mid
    return lo - 1 if lo else None
