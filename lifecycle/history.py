"""The facts of one task's history that the checker, the timeline and the pages share: its
time order, its current status, its attempts and the broker steps that end one, a commit's
commit time, the xid modulus, and which committed version of the row a read returned
(``Versions``; what a row shows of an event, ``Facts``, comes from it in one call). Pure,
and imports nothing of ours but the event record.

A read names its version by the row's ``xmin`` (the 32-bit part of the writer's 64-bit
transaction id) and its snapshot (``pg_current_snapshot()``). The capture records each
commit's top-level transaction id, so a row written inside a savepoint (Django's nested
``atomic()``, SQLAlchemy's ``begin_nested()``) has an ``xmin`` that no commit carries: the
subtransaction's. The snapshot settles it: of the task's commits, the newest one the
snapshot saw is the version the read should have returned.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from lifecycle.events import EventRecord, attempt_of

XID_WRAP = 2**32  # a row's xmin is the 64-bit txid modulo 2**32

# The broker steps that end an attempt (a delivery begun by a ``start``).
ATTEMPT_ENDS = frozenset({"ack", "fail", "nack", "skip"})


def commit_xmins(commit: EventRecord) -> tuple[int, ...]:
    """The xmins a commit's version is read with: its transaction's, and, for a write made
    inside a savepoint, the row's own, which the capture records as ``body.xmin``."""
    own = commit.txid % XID_WRAP if commit.txid is not None else None
    row = commit.body.get("xmin") if isinstance(commit.body, dict) else None
    if isinstance(row, int) and not isinstance(row, bool) and 0 <= row < XID_WRAP and row != own:
        return (row,) if own is None else (own, row)
    return () if own is None else (own,)


SNAPSHOT = re.compile(r"([0-9]{1,20}):([0-9]{1,20}):([0-9]{0,20}(?:,[0-9]{0,20})*)", re.ASCII)
MAX_SNAPSHOT = 100_000  # characters: a busy server's in-progress list fits many times over


class Snapshot:
    """``pg_current_snapshot()``: which transactions the reader could see.

    The in-progress list stays text: a busy server's holds thousands of ids, and a read is
    asked about a handful, so ``sees`` looks one up in the text instead of building a set
    for every read of a long history."""

    __slots__ = ("xmin", "xmax", "_xip")

    def __init__(self, xmin: int, xmax: int, xip: Iterable[int] | str = ()) -> None:
        self.xmin, self.xmax = xmin, xmax
        text = xip if isinstance(xip, str) else ",".join(str(x) for x in sorted(xip))
        self._xip = f",{text},"

    @classmethod
    def parse(cls, text: object) -> Snapshot | None:
        if not isinstance(text, str) or len(text) > MAX_SNAPSHOT:
            return None
        return _parsed(text)

    @property
    def xip(self) -> frozenset[int]:
        return frozenset(int(x) for x in self._xip.split(",") if x)

    def sees(self, txid: int) -> bool:
        return txid < self.xmin or (txid < self.xmax and f",{txid}," not in self._xip)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return (self.xmin, self.xmax, self.xip) == (other.xmin, other.xmax, other.xip)

    def __hash__(self) -> int:
        return hash((self.xmin, self.xmax))

    def __repr__(self) -> str:
        return f"Snapshot({self.xmin}:{self.xmax}:{self._xip.strip(',')})"


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Snapshot | None:
    """A read's snapshot is asked for by several rules, and by each recheck of its task."""
    found = SNAPSHOT.fullmatch(text)
    if found is None:
        return None
    return Snapshot(int(found[1]), int(found[2]), found[3])


def read_xmin(e: EventRecord) -> int | None:
    """The row version an API read says it returned, if it says one."""
    xmin = e.body.get("xmin") if e.source == "api" else None
    return xmin if isinstance(xmin, int) and not isinstance(xmin, bool) else None


def read_snapshot(e: EventRecord) -> Snapshot | None:
    """The snapshot an API read was made with, if it sent one."""
    return Snapshot.parse(e.body.get("snapshot")) if e.source == "api" else None


def newest_seen(
    snapshot: Snapshot, txids: Sequence[int], lo: int = 0, hi: int | None = None
) -> int | None:
    """Of one row's commits' transaction ids in commit order (those from ``lo`` to ``hi``),
    the index of the last one ``snapshot`` saw (None: none).

    A snapshot that saw a commit saw every commit of the row before it (row locks order
    the row's writers), so what it saw is a prefix: found by bisection, in log time
    whatever the history's length. A snapshot that breaks the rule (a hand-made event's)
    gets an answer, never a long search."""
    start = lo
    hi = len(txids) if hi is None else hi
    while lo < hi:
        mid = (lo + hi) // 2
        if snapshot.sees(txids[mid]):
            lo = mid + 1
        else:
            hi = mid
    return lo - 1 if lo > start else None


def commit_time(e: EventRecord) -> datetime | None:
    """A db event's commit time, where its server records them (``committed_at``)."""
    return iso_time(e.body.get("committed_at")) if e.source == "db" else None


def from_standby(read: EventRecord) -> bool:
    """Whether an API read said a hot standby served it (``pg_is_in_recovery()``)."""
    return read.source == "api" and read.body.get("standby") is True


def replayed_at(read: EventRecord) -> datetime | None:
    """How far a standby's replay had come when it served the read: the primary's commit
    time of the last transaction it had replayed (``pg_last_xact_replay_timestamp()``)."""
    return iso_time(read.body.get("replayed_at"))


def iso_time(value: object) -> datetime | None:
    """An ISO 8601 time with a zone that a body carries (None: not one, or too long)."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def attempts(records: Iterable[EventRecord]) -> list[tuple[EventRecord, EventRecord | None]]:
    """Each broker ``start``, in the given order, with the step that ended it: the first
    ``ack``/``fail``/``nack``/``skip`` of the same message and attempt not before it by
    time (None: it never ended). The swimlane's bars and the trace's spans."""
    records = list(records)
    ends: dict[tuple[str, int | str] | None, list[EventRecord]] = {}
    for r in records:
        if r.source == "broker" and r.kind in ATTEMPT_ENDS and (key := attempt_of(r)):
            ends.setdefault(key, []).append(r)
    found = []
    for s in records:
        if s.source != "broker" or s.kind != "start":
            continue
        candidates = ends.get(attempt_of(s), [])
        end = next((r for r in candidates if r.at is None or s.at is None or r.at >= s.at), None)
        found.append((s, end))
    return found


@dataclass(frozen=True)
class Facts:
    """What the history knows of one event that its row shows: of an API read, the version
    it names (``xmin``), the commit whose version it returned, and whether a hot standby
    served it and how far that standby's replay had come (``Versions.facts``)."""

    xmin: int | None = None
    version: EventRecord | None = None
    standby: bool = False
    replayed_at: datetime | None = None


class Versions:
    """The commits of a row's history as its reads name them: by the xmins their versions
    are read with (``commit_xmins``), and each transaction's last write in commit order,
    what a read's snapshot saw. Told the commits, it says which one's version a read
    returned (``facts``)."""

    def __init__(self, commits: Iterable[EventRecord] = ()) -> None:
        self.by_xmin: dict[int, EventRecord] = {}
        # Each transaction's last write, in commit order: what a read's snapshot saw.
        self.by_txid: dict[int, EventRecord] = {}
        self._txids: list[int] = []  # its keys, kept as a list for bisection
        self.know(commits)

    def know(self, commits: Iterable[EventRecord]) -> None:
        """Know these commits first, so a read that arrived before its commit still links;
        the last write of a transaction is the version readers see."""
        for r in commits:
            if r.source == "db" and r.txid is not None:
                for xmin in commit_xmins(r):
                    self.by_xmin[xmin] = r
                self.by_txid[r.txid] = r

    def note(self, e: EventRecord) -> None:
        """An event met in passing, in time order: a commit not known yet becomes known."""
        if e.source == "db" and e.txid is not None:
            for xmin in commit_xmins(e):
                self.by_xmin.setdefault(xmin, e)
            self.by_txid[e.txid] = e  # keeps its first place

    def facts(self, e: EventRecord, *, snapshots: bool = True) -> Facts:
        """What the history knows of ``e``. ``snapshots=False``: the commits known are only
        those its reads name by xmin, so no read is tied to a commit through its snapshot
        (the newest commit known may not be the newest the snapshot saw)."""
        if e.source != "api":
            return Facts()
        xmin = read_xmin(e)
        standby = from_standby(e)
        return Facts(
            xmin=xmin,
            version=self._returned(e, xmin, snapshots),
            standby=standby,
            replayed_at=replayed_at(e) if standby else None,
        )

    def _returned(self, read: EventRecord, xmin: int | None, snapshots: bool) -> EventRecord | None:
        """The commit whose version an API read returned: named by its xmin, else (a
        savepoint's xmin, or none) the newest its snapshot saw, if of the status returned."""
        commit = self.by_xmin.get(xmin) if xmin is not None else None
        snapshot = read_snapshot(read) if commit is None and snapshots else None
        if snapshot is None:
            return commit
        if len(self._txids) != len(self.by_txid):
            self._txids = list(self.by_txid)  # commits came since: in commit order
        index = newest_seen(snapshot, self._txids)
        seen = None if index is None else self.by_txid[self._txids[index]]
        return seen if seen is not None and seen.status == read.status else None


def in_time_order(records: Iterable[EventRecord]) -> list[EventRecord]:
    """The timeline's order: each event's time at its source, then arrival (id).

    All sources on one machine share a clock; across machines, skew shows up here, which
    is why every event also shows its arrival time and id.
    """
    return sorted(records, key=lambda r: (r.at.timestamp() if r.at else 0.0, r.id))


def current_status(records: Iterable[EventRecord]) -> str | None:
    """The last committed status, else the last status anyone reported."""
    return StatusTracker(records).current


class StatusTracker:
    """The current status of a list that only grows: ``update`` with the new records only."""

    def __init__(self, records: Iterable[EventRecord] = ()) -> None:
        self.committed: str | None = None
        self.reported: str | None = None
        self.update(records)

    def update(self, records: Iterable[EventRecord]) -> None:
        for r in records:
            if r.source == "db" and r.status:
                self.committed = r.status
            elif r.status and r.source in {"api", "probe"}:
                self.reported = r.status

    @property
    def current(self) -> str | None:
        return self.committed or self.reported
