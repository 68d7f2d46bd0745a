"""The checker: what went wrong in one task's history, each finding pinned to its events.

Pure logic over ``EventRecord`` lists, so every rule is tested without a server. The
rules lean towards silence: a finding must be proven by the events it names, because a
checker that cries wolf on clean runs is worse than none. Times from different processes
are compared only where the event order backs them up, and a reader's snapshot, when the
API sent one, beats any clock.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from lifecycle import statuses
from lifecycle.check.registry import KINDS, RESTS_ON_ABSENCE, fix_for
from lifecycle.events import GAP, EventRecord, attempt_of, clock, gap_span
from lifecycle.history import (
    ATTEMPT_ENDS,
    Snapshot,
    commit_time,
    commit_xmins,
    from_standby,
    iso_time,
    newest_seen,
    read_snapshot,
    read_xmin,
    replayed_at,
)
from lifecycle.statuses import Lifecycle

# A read proves it began after a commit, by clocks alone, only this long after the write.
COMMIT_MARGIN = timedelta(milliseconds=250)
NOT_FOUND = re.compile(r"does ?not ?exist|not found|no such task", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    kind: str
    events: tuple[int, ...]  # ids of the events that prove it, ascending
    message: str  # one plain sentence
    cause: str | None = None

    @property
    def fix(self) -> str:
        """One or two lines on what usually fixes it (``lifecycle.check.registry``)."""
        return fix_for(self.kind, self.cause)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "events": list(self.events),
            "message": self.message,
            "cause": self.cause,
            "fix": self.fix,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(data["kind"], tuple(data["events"]), data["message"], data.get("cause"))


@dataclass(frozen=True)
class Version:
    """One committed version of the row: the last change a transaction made to it."""

    index: int  # position in commit order
    txid: int
    events: tuple[EventRecord, ...]

    @property
    def last(self) -> EventRecord:
        return self.events[-1]

    @property
    def status(self) -> str | None:
        return self.last.status


Finder = Callable[["_History"], Iterable[Finding]]
F = TypeVar("F", bound=Finder)
# The function that finds each kind of the registry (``registry.RULES``); one function may
# find several kinds (a change of status is judged once: an overwrite or a forbidden step).
FINDERS: dict[str, Finder] = {}


def finds(*kinds: str) -> Callable[[F], F]:
    """Register the decorated function as the one that finds ``kinds``."""

    def register(finder: F) -> F:
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"{finder.__name__} finds {kind!r}, which the registry lacks")
            if kind in FINDERS:
                raise ValueError(f"{kind!r} is found by {FINDERS[kind].__name__} already")
            FINDERS[kind] = finder
        return finder

    return register


def finders() -> list[Finder]:
    """Each registered function once, in the registry's order of the kinds it finds."""
    return list(dict.fromkeys(FINDERS[kind] for kind in KINDS))


def check(
    events: Sequence[EventRecord],
    expected: str | None = None,
    *,
    lifecycle: Lifecycle | None = None,
    margin: timedelta = COMMIT_MARGIN,
) -> list[Finding]:
    """Every anomaly in one task's history, sorted by the first event that proves it.

    ``margin`` is how much later than a commit's own clock a read must have begun to
    count as starting after it, when only clocks can tell: a ``db`` event carries the time
    of the write, and the commit comes after it (by milliseconds, more under load), and
    processes' clocks may disagree. A snapshot that sees the commit needs no margin.

    ``lifecycle`` defaults to the one of the table the task's commits came from.
    """
    arrived, real_id = arrival_order(events)
    history = _History(arrived, lifecycle or statuses.of_history(arrived), margin, expected)
    findings = [f for finder in finders() for f in finder(history)]
    findings = _without_what_gaps_could_contradict(history, findings, margin)
    if real_id is not None:
        findings = [
            dataclasses.replace(f, events=tuple(sorted(real_id[i] for i in f.events)))
            for f in findings
        ]
    return sorted(findings, key=lambda f: (f.events[:1], KINDS.index(f.kind), f.events))


def arrival_order(
    events: Sequence[EventRecord],
) -> tuple[list[EventRecord], dict[int, int] | None]:
    """The events in the order the rules read as "happened before"; when that is not the
    order of their ids, renumbered 1, 2, ... with each new number's real event id.

    That order is arrival (the event id): a ``db`` event is stored in its writer's own
    transaction, so it arrives as its commit does. A ``db`` event copied from an
    application's own database (its body names the ``database``) arrives whenever the
    follower copied it, later by any amount (the inspector may have been stopped), so it
    is placed by its commit time where the server records one (``committed_at``), else by
    the time of its write, among the events that had arrived in the store by then (their
    ``received_at``): where it would have arrived had its transaction written it into the
    store, or a little early, which the rules' margins and snapshots absorb, where late
    would invent findings.
    """
    ordered = sorted(events, key=lambda e: e.id)
    copied = [e for e in ordered if _copied(e)]
    if not copied:
        return ordered, None
    backbone = [e for e in ordered if not _copied(e)]
    if backbone:
        # When each had arrived: the store's clock, as a commit written into the store in
        # its own transaction would have been stamped.
        latest: list[float] = list(itertools.accumulate((_arrival_time(e) for e in backbone), max))
        slots: dict[int, list[EventRecord]] = {}
        for e in copied:
            when = _commit_time(e)
            slots.setdefault(bisect.bisect_right(latest, when), []).append(e)
        merged: list[EventRecord] = []
        for i, e in enumerate(backbone):
            merged.extend(slots.pop(i, []))
            merged.append(e)
        for i in sorted(slots):
            merged.extend(slots[i])
        ordered = merged
    real_id = {n: e.id for n, e in enumerate(ordered, start=1)}
    return [dataclasses.replace(e, id=n) for n, e in enumerate(ordered, start=1)], real_id


def _arrival_time(e: EventRecord) -> float:
    at = e.received_at or e.at
    return at.timestamp() if at else 0.0


def _copied(e: EventRecord) -> bool:
    return e.source == "db" and "database" in e.body


def _commit_time(e: EventRecord) -> float:
    committed = commit_time(e)
    if committed is not None:
        return committed.timestamp()
    return e.at.timestamp() if e.at else 0.0


def final_read(events: Sequence[EventRecord]) -> EventRecord | None:
    """The read a scenario's verdict rests on: the probe's last, else the API's last."""
    reads = [e for e in sorted(events, key=lambda e: e.id) if _is_read(e)]
    return next((r for r in reversed(reads) if r.source == "probe"), reads[-1] if reads else None)


class _History:
    """One task's events with the row's committed versions worked out once."""

    def __init__(
        self,
        events: list[EventRecord],
        lifecycle: Lifecycle,
        margin: timedelta,
        expected: str | None = None,
    ):
        self.events, self.lifecycle, self.margin = events, lifecycle, margin
        self.expected = expected  # the final status the scenario expects, if one does
        by_txid: dict[int, list[EventRecord]] = {}
        for e in events:
            if e.source == "db" and e.kind in ("insert", "update") and e.txid is not None:
                by_txid.setdefault(e.txid, []).append(e)
        # Row locks serialise the writers, so first arrival is commit order for one row.
        groups = sorted(by_txid.items(), key=lambda item: item[1][0].id)
        self.versions = [Version(i, txid, tuple(evs)) for i, (txid, evs) in enumerate(groups)]
        self._txids = [v.txid for v in self.versions]
        self._by_status: dict[str | None, list[int]] = {}
        self._by_xmin: dict[int, list[int]] = {}
        for v in self.versions:
            self._by_status.setdefault(v.status, []).append(v.index)
            for xmin in commit_xmins(v.last):  # the version readers see: its last write
                self._by_xmin.setdefault(xmin, []).append(v.index)
        # The largest last-event id among the first n versions, to find with a bisection the
        # versions that arrived before a read (row locks make it the plain last id).
        self._arrived = list(itertools.accumulate((v.last.id for v in self.versions), max))
        self.reads = [e for e in events if _is_read(e)]
        # Each change of the row with the status it left, the trigger's word first.
        self.changes: list[tuple[EventRecord, str | None]] = []
        previous: str | None = None
        for e in (e for e in events if e.source == "db"):
            old = e.body["old_status"] if "old_status" in e.body else previous
            self.changes.append((e, old))
            previous = e.status

    def version_of(self, read: EventRecord) -> Version | None:
        """The version an API read returned: named by its xmin, else (a savepoint's xmin,
        or none) the newest version its snapshot saw, when that has the status returned."""
        xmin = read_xmin(read)
        if xmin is not None:
            # A read can only return a version whose events arrived before its own.
            named = self._by_xmin.get(xmin, [])
            at = bisect.bisect_left(named, self.arrived_before(read))
            if at:
                return self.versions[named[at - 1]]
        seen = self.seen_by(read)
        return seen if seen is not None and seen.status == read.status else None

    def seen_by(self, read: EventRecord) -> Version | None:
        """The newest version the read's snapshot saw: what it should have returned."""
        snapshot = read_snapshot(read)
        if snapshot is None:
            return None
        index = newest_seen(snapshot, self._txids)
        return None if index is None else self.versions[index]

    def last_with_status(self, status: str | None, before: int) -> Version | None:
        """The newest version before index ``before`` that had ``status``."""
        indexes = self.indexes_of(status)
        at = bisect.bisect_left(indexes, before)
        return self.versions[indexes[at - 1]] if at else None

    def committed_before(self, read: EventRecord) -> list[Version]:
        """Versions whose events all arrived before the read's (a sound, lenient bound)."""
        return self.versions[: self.arrived_before(read)]

    def last_begun_before(self, read: EventRecord, lo: int, hi: int) -> Version | None:
        """Of the versions from ``lo`` to ``hi``, the newest that the read began after, by
        time evidence: a bisection, since they committed in order."""
        start = lo
        while lo < hi:
            mid = (lo + hi) // 2
            if self.began_after(read, self.versions[mid]):
                lo = mid + 1
            else:
                hi = mid
        return self.versions[lo - 1] if lo > start else None

    def arrived_before(self, read: EventRecord) -> int:
        """How many versions ``committed_before`` holds, without copying them."""
        return bisect.bisect_left(self._arrived, read.id)

    def indexes_of(self, status: str | None) -> list[int]:
        """The indexes of the versions that had ``status``, ascending."""
        return self._by_status.get(status, [])

    def began_after(self, read: EventRecord, version: Version) -> bool:
        """Time evidence that the read began after the version had committed."""
        commit = version.last
        if commit.id > read.id or read.at is None or commit.at is None:
            return False
        committed = commit_time(commit)
        if committed is not None:
            # The server's own commit time (track_commit_timestamp): no margin for the gap
            # between the write and its commit.
            return read.at > committed
        if (commit.received_at or commit.at) > (read.received_at or read.at):
            return False
        return read.at - commit.at > self.margin


@finds("stale_read")
def _stale_reads_of_every_cause(h: _History) -> Iterator[Finding]:
    """A read that returned an older version than it should have: by its version or clock
    (a cached object, an old snapshot, a cached response), from a standby, or from a
    response cache in front of the API."""
    yield from _stale_reads(h)
    yield from _replica_reads(h)
    yield from _response_cache(h)


def _stale_reads(h: _History) -> Iterator[Finding]:
    # (returned, newer, the read named its version) -> [(read, cause)]
    groups: dict[tuple[int, int, bool], list[tuple[EventRecord, str | None]]] = {}
    for read in h.reads:
        if from_standby(read):
            continue  # its snapshot is the standby's: _replica_reads judges it
        returned = h.version_of(read)
        if returned is None:
            cached = _cached_by_snapshot(h, read)
            if cached is not None:
                groups.setdefault((cached[0].index, cached[1].index, False), []).append(
                    (read, "cached_object")
                )
            continue
        stale = _newest_missed(h, read, returned)
        if stale is not None:
            # The application said it answered from its own cache: that is the cause, whatever
            # the snapshot of the read that filled the cache was.
            cause = "cached_response" if read.body.get("cached") is True else stale[1]
            groups.setdefault((returned.index, stale[0].index, True), []).append((read, cause))
    for (old, new, versioned), hits in groups.items():
        returned, newer = h.versions[old], h.versions[new]
        reads = [r for r, _ in hits]
        cause = next((c for _, c in hits if c), None)
        if not versioned:
            yield Finding(
                "stale_read",
                _ids(*reads, newer.last),
                f"{_reads_phrase(reads)} {returned.status} with no version of the row, although "
                f"{_their(reads)} snapshot already saw transaction {newer.txid} commit "
                f"{newer.status} at {_clock(newer.last.at)}{_gap(newer.last.at, reads)}: the "
                f"object came from a session's identity map or another cache, not from the "
                f"row (the last {returned.status} was transaction {returned.txid}'s); reload it "
                "(SQLAlchemy's populate_existing, Django's refresh_from_db) or use a new session.",
                cause,
            )
            continue
        why = {
            "cached_object": ", and the reader's snapshot already saw it (a cached object)",
            "old_snapshot": ", but the reader used a snapshot taken before it (an old snapshot)",
            "cached_response": (
                ", but the API answered from its own cache, filled by a read made before that "
                "commit (a cached response): drop the entry when the task's row changes, or "
                "cache only final statuses"
            ),
        }.get(cause or "", "")
        yield Finding(
            "stale_read",
            _ids(*reads, newer.last),
            f"{_reads_phrase(reads)} {returned.status}, the version of transaction "
            f"{returned.txid}, although transaction {newer.txid} had committed {newer.status} "
            f"at {_clock(newer.last.at)}{_gap(newer.last.at, reads)}{why}.",
            cause,
        )


def _replica_reads(h: _History) -> Iterator[Finding]:
    """Reads a standby served of a version older than one the primary had committed before
    the read began: its replay had not reached that commit.

    A standby's snapshot is its own (built from the WAL it has replayed), so it proves
    nothing against the primary's commits: a commit whose WAL arrived but is not replayed
    yet shows there as in progress. Only time evidence counts, as for a read with no
    snapshot: the read began after the commit (by the margin, or the commit's own time)."""
    groups: dict[tuple[int, int], list[EventRecord]] = {}
    for read in h.reads:
        if not from_standby(read):
            continue
        returned = h.version_of(read)
        if returned is None:
            continue
        newer = h.last_begun_before(read, returned.index + 1, h.arrived_before(read))
        if newer is None:
            continue
        groups.setdefault((returned.index, newer.index), []).append(read)
    for (old, new), reads in groups.items():
        returned, newer = h.versions[old], h.versions[new]
        exact = commit_time(newer.last)  # else the change's own time: the commit came later
        committed = exact or newer.last.at
        replay = replayed_at(reads[0])
        if replay is not None and committed is not None:
            behind = round((committed - replay).total_seconds() * 1000)
            if behind > 0:
                short = f"{behind} ms" if exact else f"at least {behind} ms"
                lag = f"its replay had reached only {_clock(replay)}, {short} short of that commit"
            else:
                # Replay stamps are the primary's commit times of other transactions: one
                # stamped after this change (or, with concurrent commits, after this commit)
                # can be replayed before this commit's own record.
                lag = (
                    f"its replay, at {_clock(replay)}, had not yet applied that commit (another "
                    f"transaction's commit, stamped later, was replayed before it)"
                )
        else:
            lag = "its replay had not reached it"
        yield Finding(
            "stale_read",
            _ids(*reads, newer.last),
            f"{_reads_phrase(reads)} {returned.status}, the version of transaction "
            f"{returned.txid}, from a standby: transaction {newer.txid} had committed "
            f"{newer.status} on the primary at {_clock(newer.last.at)}"
            f"{_gap(newer.last.at, reads)}, but {lag} (a replica that lags).",
            "replica",
        )


SLACK = timedelta(milliseconds=50)  # an API read stamped this far outside a poll is its own
CACHE_HEADERS = ("age", "x-cache", "cache-control")
LONGEST_POLL = timedelta(seconds=60)  # a poll's answer is looked for no later than this


def _response_cache(h: _History) -> Iterator[Finding]:
    """Probe reads that a cache between the client and the API answered: each returned a
    status older than one committed before it began, and no API read served that status
    while the poll was in flight (the API read another one, or never ran).

    Only in a history whose API reports its reads (and lost none: no ``api`` gap); a
    service that reports none says nothing about which polls reached it."""
    api = [r for r in h.reads if r.source == "api" and r.at is not None]
    if not api or not h.versions or any(e.kind == GAP and e.source == "api" for e in h.events):
        return
    api.sort(key=lambda r: r.at or datetime.min)
    api_at = [r.at for r in api if r.at is not None]
    groups: dict[tuple[str | None, int], list[tuple[EventRecord, list[EventRecord]]]] = {}
    for read in h.reads:
        if read.source != "probe" or read.at is None:
            continue
        sent = iso_time(read.body.get("sent_at")) or read.at
        got = min(max(iso_time(read.body.get("received_at")) or sent, sent), sent + LONGEST_POLL)
        lo, hi = bisect.bisect_left(api_at, sent - SLACK), bisect.bisect_right(api_at, got + SLACK)
        served = api[lo:hi]
        if any(r.status == read.status for r in served):
            continue  # the API answered it (a stale API read is judged on its own)
        arrived = h.arrived_before(read)
        written = h.indexes_of(read.status)
        older = bisect.bisect_left(written, arrived)  # versions of its status that had arrived
        if not older:
            continue  # no commit had written it: an unwritten read
        newer = h.last_begun_before(read, 0, arrived)
        if newer is None or bisect.bisect_left(written, newer.index, 0, older) < older:
            # Not proven older by the clocks (or it may be a later version of that status):
            # the API itself had served a newer version before the poll was sent.
            newer = _served_newer(h, api, bisect.bisect_left(api_at, sent), written[older - 1])
        if newer is None:
            continue
        groups.setdefault((read.status, newer.index), []).append((read, served))
    for (status, new), hits in groups.items():
        newer, reads = h.versions[new], [r for r, _ in hits]
        served = [s for _, answered in hits for s in answered]
        if served:
            api_said = (
                f"the API's reads while they were in flight returned "
                f"{', '.join(sorted({str(s.status) for s in served}))}, not {status}"
            )
        else:
            api_said = "no API read was made while they were in flight"
            if len(reads) == 1:
                api_said = "no API read was made while it was in flight"
        quoted = _cache_headers(reads)
        yield Finding(
            "stale_read",
            _ids(*reads, *served[:4], newer.last),
            f"{_reads_phrase(reads).replace('read', 'probe read', 1)} {status}, although "
            f"transaction {newer.txid} had committed {newer.status} at "
            f"{_clock(newer.last.at)}{_gap(newer.last.at, reads)}, and {api_said}: a cache "
            f"between the client and the API answered{quoted}.",
            "response_cache",
        )


def _served_newer(
    h: _History, api: list[EventRecord], before: int, last_old: int
) -> Version | None:
    """A version newer than ``last_old`` that one of the last ``WALK`` API reads before a poll
    was sent (``api[:before]``) served: the API had moved on, so an older answer did not
    come from it."""
    for r in reversed(api[max(0, before - WALK) : before]):
        version = h.version_of(r)
        if version is not None and version.index > last_old:
            return version
    return None


def _cache_headers(reads: list[EventRecord]) -> str:
    """The probe's kept response headers that say a cache answered, quoted (bounded)."""
    headers = reads[0].body.get("headers")
    if not isinstance(headers, dict):
        return ""
    said = [
        f"{name.title() if name != 'x-cache' else 'X-Cache'}: {value[:80]}"
        for name in CACHE_HEADERS
        if isinstance(value := headers.get(name), str) and value
    ]
    return f" (the response said {'; '.join(said)})" if said else ""


def _cached_by_snapshot(h: _History, read: EventRecord) -> tuple[Version, Version] | None:
    """(the older version it returned, the newer one its snapshot saw) for a read whose
    version is unknown but whose snapshot saw a commit of another status: the object it
    returned did not come from the row its snapshot would read."""
    seen = h.seen_by(read)
    if seen is None or seen.status == read.status:
        return None
    later = h.indexes_of(read.status)
    if bisect.bisect_right(later, seen.index) < bisect.bisect_left(later, h.arrived_before(read)):
        # A version of that status, invisible to the snapshot, had arrived: the reader's own
        # write (a snapshot does not list its own transaction), or one in progress.
        return None
    older = h.last_with_status(read.status, seen.index)
    return (older, seen) if older is not None else None  # else: an unwritten read


def _their(reads: list[EventRecord]) -> str:
    return "its" if len(reads) == 1 else "their"


WALK = 64  # newer versions judged one by one, newest first, before bisection takes over


def _newest_missed(
    h: _History, read: EventRecord, returned: Version
) -> tuple[Version, str | None] | None:
    """The newest version, newer than the one returned, that proves the read stale, with
    its cause; None when the read may have begun before every newer version committed.

    Only versions that arrived before the read can prove it. The newest ``WALK`` are judged
    one by one; past them (a read of a version thousands of commits old), bisections: one
    row's versions commit in order, so a snapshot saw a prefix of them and a read began
    after a prefix of them."""
    snapshot = read_snapshot(read)
    lo, arrived = returned.index + 1, h.arrived_before(read)
    hi = max(lo, arrived - WALK)
    for newer in reversed(h.versions[hi:arrived]):
        cause = _staleness(h, read, newer, snapshot)
        if cause != "fresh":
            return newer, cause
    if hi <= lo:
        return None
    seen = newest_seen(snapshot, h._txids, lo, hi) if snapshot is not None else None
    after = h.last_begun_before(read, lo if seen is None else seen + 1, hi)
    if after is not None:
        # Invisible to the snapshot (if any), and begun after: the snapshot is old, unless
        # the writer was in progress when it was taken (then the read may have begun first).
        for newer in reversed(h.versions[max(lo, after.index - WALK) : after.index + 1]):
            if snapshot is None:
                return newer, None
            if _staleness(h, read, newer, snapshot) == "old_snapshot":
                return newer, "old_snapshot"
    if seen is not None:
        return h.versions[seen], "cached_object"
    return None


def _staleness(h: _History, read: EventRecord, newer: Version, snap: Snapshot | None) -> str | None:
    """``"fresh"`` if the read may have begun before ``newer`` committed, else the cause."""
    if snap is None:
        return None if h.began_after(read, newer) else "fresh"
    if snap.sees(newer.txid):
        return "cached_object"
    # Not visible: either the snapshot predates the writer (old) or the read began first.
    if newer.txid >= snap.xmax and h.began_after(read, newer):
        return "old_snapshot"
    return "fresh"


@finds("unwritten_read")
def _unwritten_reads(h: _History) -> Iterator[Finding]:
    if not h.versions:
        return  # no commits captured: nothing to hold the reads against
    groups: dict[str, list[EventRecord]] = {}
    for read in h.reads:
        assert read.status is not None
        written = h.indexes_of(read.status)
        if not written or written[0] >= h.arrived_before(read):
            groups.setdefault(read.status, []).append(read)
    for status, reads in groups.items():
        written = h.indexes_of(status)
        later = h.versions[written[0]] if written else None
        after = f" (transaction {later.txid} wrote it only later)" if later else ""
        yield Finding(
            "unwritten_read",
            _ids(*reads),
            f"{_reads_phrase(reads)} {status}, a status no commit of this task had written "
            f"by then{after}.",
        )


@finds("terminal_overwrite", "forbidden_transition")
def _transitions(h: _History) -> Iterator[Finding]:
    """Judge each change the writer made, including steps inside one transaction."""
    known, terminal = h.lifecycle.statuses, h.lifecycle.terminal
    previous: EventRecord | None = None
    for e, old in h.changes:
        new = e.status
        if e.kind == "update" and old in known and new in known and old != new:
            proof = _ids(*([previous] if previous else []), e)
            when = f"in transaction {e.txid} at {_clock(e.at)}"
            if old in terminal:
                yield Finding(
                    "terminal_overwrite",
                    proof,
                    f"The task left terminal status {old} for {new} {when}.",
                )
            elif (old, new) not in h.lifecycle.allowed:
                yield Finding(
                    "forbidden_transition",
                    proof,
                    f"The task went from {old} to {new} {when}, a transition the lifecycle "
                    "forbids.",
                )
        previous = e


@finds("non_monotonic_reads")
def _non_monotonic_reads(h: _History) -> Iterator[Finding]:
    streams: dict[str, list[EventRecord]] = {}
    for read in h.reads:
        if read.source == "api" and read.body.get("client"):
            streams.setdefault(f"Client {read.body['client']}", []).append(read)
        elif read.source == "probe":
            streams.setdefault(f"The probe's run {read.body.get('run', '?')}", []).append(read)
    for who, reads in streams.items():
        pairs = _regressions(h, reads)
        if not pairs:
            continue
        ahead, behind = pairs[0]
        more = f", and {len(pairs) - 1} more reads went back" if len(pairs) > 1 else ""
        yield Finding(
            "non_monotonic_reads",
            _ids(*(e for pair in pairs for e in pair)),
            f"{who} read {_seen(h, ahead)} at {_clock(ahead.at)}, then went back to "
            f"{_seen(h, behind)} at {_clock(behind.at)}{more}.",
        )


def _regressions(h: _History, reads: list[EventRecord]) -> list[tuple[EventRecord, EventRecord]]:
    """(read that saw further, read that went back) pairs for one client's reads.

    A status-only read is placed at the earliest version it may have seen, so a retry
    (RUNNING, PENDING, RUNNING again) is not taken for going back; without any captured
    commits the lifecycle's reachability decides instead.
    """
    pairs: list[tuple[EventRecord, EventRecord]] = []
    floor, furthest = -1, None
    for read in reads:
        assert read.status is not None
        if not h.versions:
            if furthest and furthest.status in h.lifecycle.statuses:
                if read.status in h.lifecycle.statuses and not h.lifecycle.reachable(
                    furthest.status, read.status
                ):
                    pairs.append((furthest, read))
                    continue
            furthest = read
            continue
        version = h.version_of(read)
        if version is None:
            # The versions of its status that had arrived: the first at or past the floor,
            # else the last (bisections: a long history has many such reads)
            seen = h.indexes_of(read.status)
            arrived = bisect.bisect_left(seen, h.arrived_before(read))
            if not arrived:
                continue  # an unwritten read, reported as such
            ahead = bisect.bisect_left(seen, floor, 0, arrived)
            index = seen[ahead] if ahead < arrived else seen[arrived - 1]
        else:
            index = version.index
        if index < floor and furthest is not None:
            pairs.append((furthest, read))
        elif index > floor:
            floor, furthest = index, read
    return pairs


@finds("duplicate_execution")
def _duplicate_executions(h: _History) -> Iterator[Finding]:
    running = h.lifecycle.running
    open_starts: dict[str, EventRecord] = {}  # message id -> start not followed by a retry
    starts: list[tuple[EventRecord, EventRecord]] = []
    # (first entry into RUNNING, second entry, the start that preceded the second)
    entries: list[tuple[EventRecord, EventRecord, EventRecord | None]] = []
    entered: EventRecord | None = None
    last_start: EventRecord | None = None
    changes = {e.id: old for e, old in h.changes}
    for e in h.events:
        message = None if e.body.get("message_id") is None else str(e.body["message_id"])
        if e.source == "broker" and e.kind == "start":
            last_start = e
            if message is not None and message in open_starts:
                starts.append((open_starts[message], e))
            if message is not None:
                open_starts.setdefault(message, e)
        elif e.source == "broker" and e.kind == "retry":
            open_starts.pop(message or "", None)
            entered = None
        elif e.id in changes and e.kind != "delete" and running is not None:
            old = changes[e.id]
            if e.status == running and old != running:
                if entered is not None:
                    entries.append((entered, e, last_start))
                entered = e
            elif old == running and e.status not in h.lifecycle.terminal:
                entered = None  # a failed attempt handed back for a retry
    claimed: set[int] = set()
    unclaimed = [b for _, b, _ in entries]
    for first, again in starts:
        # The row entry of this second start: the one it preceded, else (broker events
        # reach the table through the ingestor, after the trigger's rows) the first left.
        rows = [b for _, b, start in entries if start is again] or unclaimed[:1]
        unclaimed = [b for b in unclaimed if b not in rows]
        claimed.update(b.id for b in rows)
        row = f", and transaction {rows[0].txid} put the row in {running} again" if rows else ""
        if again.body.get("redelivered") is True:
            # RabbitMQ's own word: the first delivery was never acked (its worker died, or
            # lost its connection, before the ack reached RabbitMQ).
            yield Finding(
                "duplicate_execution",
                _ids(first, again, *rows),
                f"Message {first.body['message_id']} started at {_clock(first.at)} and again "
                f"at {_clock(again.at)}: RabbitMQ redelivered it, as its first delivery was "
                f"never acked{row}.",
                cause="redelivery",
            )
            continue
        yield Finding(
            "duplicate_execution",
            _ids(first, again, *rows),
            f"Message {first.body['message_id']} started at {_clock(first.at)} and again at "
            f"{_clock(again.at)} with no retry in between{row}.",
        )
    for first, again, _ in entries:
        if again.id not in claimed:
            yield Finding(
                "duplicate_execution",
                _ids(first, again),
                f"The row entered {running} in transaction {first.txid} at {_clock(first.at)} "
                f"and again in transaction {again.txid} at {_clock(again.at)} with no retry "
                "in between.",
            )


@finds("enqueue_before_commit")
def _enqueue_before_commit(h: _History) -> Iterator[Finding]:
    """The worker got the message before the row it needs was committed.

    The insert's event is written before its commit, so a start arriving after it proves
    nothing; a start arriving before it does, and so does the worker saying, before it
    wrote anything, that it could not find the task.
    """
    insert = next((e for e in h.events if e.source == "db" and e.kind == "insert"), None)
    if insert is None:
        return
    early = [e for e in h.events if e.source == "broker" and e.id < insert.id]
    start = next((e for e in early if e.kind == "start"), None)
    if start is not None:
        yield Finding(
            "enqueue_before_commit",
            _ids(*early, insert),
            f"The worker started message {start.body.get('message_id')} at {_clock(start.at)}, "
            f"before transaction {insert.txid} committed the task's row (inserted at "
            f"{_clock(insert.at)}).",
        )
        return
    # The worker said the task was missing before anything wrote the row after its insert.
    first_write = next((e.id for e in h.events if e.source == "db" and e.kind == "update"), None)
    early = [e for e in h.events if first_write is None or e.id < first_write]
    starts = [e for e in early if e.source == "broker" and e.kind == "start"]
    missing = [e for e in early if e.source == "log" and _says_not_found(e)]
    if starts and missing:
        log = missing[0]
        # Publishers race to the ingestor: take the start just before the log, if any.
        start = ([s for s in starts if s.id < log.id] or starts)[-1]
        yield Finding(
            "enqueue_before_commit",
            _ids(insert, start, log),
            f"The worker started message {start.body.get('message_id')} at "
            f"{_clock(start.at)} and reported the task not found at {_clock(log.at)}: "
            f"transaction {insert.txid}, which inserts the row, had not committed yet.",
        )


@finds("stuck")
def _stuck(h: _History) -> Iterator[Finding]:
    finishes = [e for e in h.events if e.source == "broker" and e.kind in ("ack", "nack")]
    db = [e for e in h.events if e.source == "db"]
    if not finishes or not h.versions or db[-1].kind == "delete":
        return
    finish, last = finishes[-1], h.versions[-1]
    # The enqueue (or retry) of the finished message's own attempt, or of an earlier one,
    # came before the finish, wherever it arrived: the API's publisher and the worker's race
    # to the ingestor, so the API's enqueue is often stored after the worker's start and ack.
    # Only another message, or a later attempt, sent or started after the finish says the
    # work goes on.
    finished = attempt_of(finish)
    again = any(
        e.source == "broker"
        and e.id > finish.id
        and (e.kind == "start" or (e.kind in ("enqueue", "retry") and not _led_to(e, finished)))
        for e in h.events
    )
    if again or last.status in h.lifecycle.terminal or last.status not in h.lifecycle.statuses:
        return
    if _dropped(h, finish):
        return  # the message came before the row: enqueue_before_commit names it
    verb = "acked" if finish.kind == "ack" else "gave up on"
    yield Finding(
        "stuck",
        _ids(last.last, finish),
        f"The worker {verb} message {finish.body.get('message_id')} at {_clock(finish.at)}, "
        f"but the row's last commit (transaction {last.txid} at {_clock(last.last.at)}) "
        f"left it {last.status}, not in a terminal status.",
    )


def _led_to(sent: EventRecord, finished: tuple[str, int | str] | None) -> bool:
    """Whether an enqueue or retry sent the finished attempt, or one before it, of the same
    message: then it happened before that attempt finished."""
    attempt = attempt_of(sent)
    if finished is None or attempt is None or attempt[0] != finished[0]:
        return False
    if isinstance(attempt[1], int) and isinstance(finished[1], int):
        return attempt[1] <= finished[1]
    return attempt[1] == finished[1]


@finds("swallowed_error")
def _swallowed_errors(h: _History) -> Iterator[Finding]:
    """An attempt that logged an error, then committed success and acked, in a history where
    no failure was ever committed: the error was caught and swallowed.

    An attempt is one delivery: from a broker ``start`` to the ``ack`` of the same message
    and attempt, by the worker's own clock. An error is a log record at ERROR or above, or
    one at WARNING that carries an exception's traceback (a caught exception logged as a
    warning, as client libraries do); a plain warning is not one. The attempt's commits are
    the writes whose time falls between its start and its ack.
    """
    if any(e.status in h.lifecycle.failed for e, _ in h.changes if e.kind != "delete"):
        return
    succeeded = h.lifecycle.succeeded
    # Indexed once, so a history of thousands of attempts is not scanned per attempt.
    finishes: dict[tuple[str, int | str], list[EventRecord]] = {}
    named: dict[tuple[str, int | str], list[EventRecord]] = {}  # errors that name their attempt
    unnamed: list[EventRecord] = []  # errors that name none (older clients), by time
    for e in h.events:
        key = attempt_of(e)
        if e.source == "broker" and e.kind in ATTEMPT_ENDS and key is not None:
            finishes.setdefault(key, []).append(e)
        elif e.source == "log" and _is_error(e):
            if key is not None:
                named.setdefault(key, []).append(e)
            elif e.body.get("message_id") is None and e.at is not None:
                unnamed.append(e)
    unnamed.sort(key=lambda e: (e.at, e.id))
    unnamed_at: list[datetime] = [e.at for e in unnamed if e.at is not None]
    wins = sorted(
        (e.at, n, e)
        for n, (e, _) in enumerate(h.changes)
        if e.kind != "delete" and e.status in succeeded and e.at is not None
    )
    wins_at = [at for at, _, _ in wins]
    finish_ids = {key: [f.id for f in ends] for key, ends in finishes.items()}
    starts = [e for e in h.events if e.source == "broker" and e.kind == "start"]
    starts_of: dict[tuple[str, int | str], list[int]] = {}  # a key's deliveries, by id
    for e in starts:
        if (key := attempt_of(e)) is not None:
            starts_of.setdefault(key, []).append(e.id)
    for start in starts:
        key = attempt_of(start)
        if key is None:
            continue
        ends = finishes.get(key, [])
        after = bisect.bisect_right(finish_ids[key], start.id) if ends else 0
        end = ends[after] if after < len(ends) else None  # the first to end it
        later = starts_of[key]
        again = bisect.bisect_right(later, start.id)
        if end is not None and again < len(later) and later[again] < end.id:
            end = None  # delivered again before anything ended it: this delivery died
        if end is None or end.kind != "ack" or start.at is None or end.at is None:
            continue
        # What it logged: records naming its attempt, whatever thread logged them, within
        # its delivery (a redelivery names the same attempt: one process's clock and pid
        # tell them apart); records naming none, from the thread that ran the attempt.
        errors = [
            e
            for e in named.get(key, [])
            if e.at is not None
            and start.at <= e.at <= end.at
            and e.body.get("pid") in (None, start.body.get("pid"))
        ]
        window = unnamed[
            bisect.bisect_left(unnamed_at, start.at) : bisect.bisect_right(unnamed_at, end.at)
        ]
        errors += [e for e in window if _same_process(start, e)]
        # Its commits: the success writes whose time falls in it, the last in commit order.
        commits = [
            e
            for _, _, e in sorted(
                wins[bisect.bisect_left(wins_at, start.at) : bisect.bisect_right(wins_at, end.at)],
                key=lambda w: w[1],
            )
        ]
        if not errors or not commits:
            continue
        error, commit = min(errors, key=lambda e: e.id), commits[-1]
        logged = str(error.body.get("message") or "")[:160]
        yield Finding(
            "swallowed_error",
            _ids(start, error, commit, end),
            f"Attempt {start.body.get('attempt', 1)} of message {start.body.get('message_id')} "
            f"logged {error.kind.upper()} at {_clock(error.at)} ({logged!r}), then committed "
            f"{commit.status} in transaction {commit.txid} at {_clock(commit.at)} and acked at "
            f"{_clock(end.at)}; no failure was ever committed, so the error was swallowed.",
        )


def _same_process(start: EventRecord, log: EventRecord) -> bool:
    """Whether a log record came from the worker thread that ran the attempt, as far as both
    say (a record that names no pid or thread is not ruled out)."""
    for key in ("pid", "thread"):
        a, b = start.body.get(key), log.body.get(key)
        if a is not None and b is not None and a != b:
            return False
    return True


def _run_in_progress(h: _History, read: EventRecord) -> bool:
    """Whether the read is a probe's whose run has been submitted and has no verdict yet:
    its last read so far is not the final one (a live page asks mid-run)."""
    run = read.body.get("run")
    if read.source != "probe" or run is None:
        return False
    probe = [e for e in h.events if e.source == "probe" and e.body.get("run") == run]
    return any(e.kind == "submit" for e in probe) and not any(e.kind == "verdict" for e in probe)


def _is_error(log: EventRecord) -> bool:
    return log.kind in ("error", "critical") or bool(log.body.get("exception"))


def _dropped(h: _History, finish: EventRecord) -> bool:
    """Whether the finished delivery wrote nothing because the row was not there yet."""
    starts = [e.id for e in h.events if e.source == "broker" and e.kind == "start"]
    since = max((i for i in starts if i < finish.id), default=0)
    wrote = any(e.kind == "update" and since < e.id < finish.id for e, _ in h.changes)
    return not wrote and next(_enqueue_before_commit(h), None) is not None


@finds("expectation_mismatch")
def _expectation_mismatch(h: _History) -> Iterator[Finding]:
    """The scenario's verdict, traced back to where the wrong status was born."""
    expected = h.expected
    if expected is None:
        return
    read = final_read(h.events)
    if read is None or read.status == expected or _run_in_progress(h, read):
        return
    observed, committed = read.status, h.committed_before(read)
    head = f"The final read at {_clock(read.at)} returned {observed} where {expected} was expected"
    writers = [v for v in committed if v.status == observed]
    if committed and committed[-1].status == observed:
        v = committed[-1]
        writer = "the worker committed" if v.last.kind == "update" else "the insert committed"
        yield Finding(
            "expectation_mismatch",
            _ids(v.last, read),
            f"{head}; {writer} {observed} in transaction {v.txid} at {_clock(v.last.at)} "
            "and nothing replaced it, so the read path is innocent.",
            "committed",
        )
    elif writers:
        v, latest = writers[-1], committed[-1]
        yield Finding(
            "expectation_mismatch",
            _ids(v.last, latest.last, read),
            f"{head}; transaction {v.txid} had committed {observed} but transaction "
            f"{latest.txid} replaced it with {latest.status} at {_clock(latest.last.at)}, so "
            "the read path served an old version.",
            "superseded",
        )
    else:
        yield Finding(
            "expectation_mismatch",
            _ids(read),
            f"{head}; no commit of this task had written {observed}, so it was born in the "
            "read path.",
            "reads_only",
        )


def _is_read(e: EventRecord) -> bool:
    """A read that returned a status: errors and not-founds say nothing about versions."""
    if e.kind != "read" or e.source not in ("api", "probe") or e.status is None:
        return False
    http = e.body.get("http_status")
    return not isinstance(http, int) or 200 <= http < 300


def _says_not_found(e: EventRecord) -> bool:
    text = f"{e.body.get('message') or ''} {e.body.get('exception') or ''}"
    return bool(NOT_FOUND.search(text))


def _without_what_gaps_could_contradict(
    h: _History, findings: list[Finding], margin: timedelta
) -> list[Finding]:
    spans = [gap_span(e) for e in h.events if e.kind == GAP and e.source == "broker"]
    if not spans or not findings:
        return findings
    by_id = {e.id: e for e in h.events}
    kept = []
    for f in findings:
        proof = [by_id[i] for i in f.events if i in by_id]
        times = [e.at for e in proof if e.at is not None]
        if f.kind not in RESTS_ON_ABSENCE or not times:
            kept.append(f)
            continue
        if f.kind == "duplicate_execution" and any(
            e.source == "broker" and e.kind == "start" and e.body.get("redelivered") is True
            for e in proof
        ):
            kept.append(
                f
            )  # RabbitMQ said it delivered the message again: no lost retry explains that
            continue
        start = min(times) - margin
        end = max(times) + margin if f.kind == "duplicate_execution" else None
        overlaps = any(
            (last is None or last >= start) and (end is None or first is None or first <= end)
            for first, last in spans
        )
        if not overlaps:
            kept.append(f)
    return kept


def _ids(*events: EventRecord) -> tuple[int, ...]:
    return tuple(sorted({e.id for e in events}))


def _clock(t: datetime | None) -> str:
    """HH:MM:SS.mmm in UTC, the form every message uses."""
    return clock(t) or "an unknown time"


def _gap(commit: datetime | None, reads: list[EventRecord]) -> str:
    """How long before the (first) read the commit was, when the clocks agree it was."""
    read = reads[0].at
    if commit is None or read is None or read <= commit:
        return ""
    first = "first read" if len(reads) > 1 else "read"
    return f", {round((read - commit).total_seconds() * 1000)} ms before the {first}"


def _reads_phrase(reads: list[EventRecord]) -> str:
    if len(reads) == 1:
        return f"The read at {_clock(reads[0].at)} returned"
    return f"{len(reads)} reads from {_clock(reads[0].at)} to {_clock(reads[-1].at)} returned"


def _seen(h: _History, read: EventRecord) -> str:
    version = h.version_of(read)
    return f"{read.status} (transaction {version.txid})" if version else f"{read.status}"
