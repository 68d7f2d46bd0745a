"""How a task's events are laid out on its timeline: lanes, labels, links. Pure logic.

The page, the live push and the JSON timeline all go through ``TimelineBuilder``, so an
event looks the same however it reached the browser.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lifecycle.check.rules import Finding
from lifecycle.events import GAP, EventRecord, attempt_of, clock, gap_span
from lifecycle.history import (
    ATTEMPT_ENDS,
    commit_xmins,
    newest_seen,
    read_snapshot,
    read_xmin,
    replayed_at,
)


@dataclass(frozen=True)
class Lane:
    """One row of the timeline: the events of one source (of any other source's: "log")."""

    name: str  # the source
    title: str  # its heading: "Commits"
    noun: str  # what it counts, plural: "3 commits"
    word: str  # one of its steps in one word, as the compare page tags a step: "commit"


# Reads next to commits: the comparison the page exists for. The one list of the lanes:
# the others below, the web's and the compare page's words are read from it.
LANE_LIST: tuple[Lane, ...] = (
    Lane("probe", "Probe reads", "probe reads", "probe"),
    Lane("api", "API reads", "API reads", "read"),
    Lane("db", "Commits", "commits", "commit"),
    Lane("broker", "Broker", "broker steps", "broker"),
    Lane("log", "Warnings", "warnings", "log"),
)
LANES: list[tuple[str, str]] = [(lane.name, lane.title) for lane in LANE_LIST]
LANE_TITLES = dict(LANES)
LANE_NOUNS = {lane.name: lane.noun for lane in LANE_LIST}


def status_class(status: str | None) -> str:
    return (status or "none").lower()


@dataclass
class EventView:
    record: EventRecord
    lane: str
    title: str
    summary: str
    offset_ms: float
    version_of: int | None = None  # for a read: the id of the commit whose version it got
    version_txid: int | None = None
    findings: list[str] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def status(self) -> str | None:
        return self.record.status

    @property
    def status_class(self) -> str:
        return status_class(self.record.status)

    @property
    def lane_index(self) -> int:
        return [name for name, _ in LANES].index(self.lane)

    @property
    def at_us(self) -> int:
        return round(self.record.at.timestamp() * 1_000_000) if self.record.at else 0

    @property
    def clock(self) -> str:
        return clock(self.record.at)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.record.as_json(),
            "lane": self.lane,
            "summary": self.summary,
            "offset_ms": round(self.offset_ms, 3),
            "version_of": self.version_of,
            "findings": self.findings,
        }


def _fmt(value: Any) -> str:
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "—"
    return str(value)


def field_text(value: Any) -> str:
    """A body value as the popover shows it, cut at 600 characters."""
    text = value if isinstance(value, str) else _fmt(value)
    return text if len(text) <= 600 else text[:600] + "…"


class TimelineBuilder:
    """Turns events into views, remembering commits so a read can name its version.

    Keep one per task and feed it events in arrival order, whole history first.
    """

    def __init__(self, *, all_commits: bool = True) -> None:
        """``all_commits=False``: it is fed part of a long history, with only the commits
        its reads name by xmin, so no read is tied to a commit through its snapshot (the
        newest commit it knows may not be the newest the snapshot saw)."""
        self.all_commits = all_commits
        self.origin: datetime | None = None
        self.commits_by_xmin: dict[int, EventRecord] = {}
        # Each transaction's last write, in commit order: what a read's snapshot saw.
        self.commits_by_txid: dict[int, EventRecord] = {}
        self._txids: list[int] = []  # its keys, kept as a list for bisection

    def add(self, record: EventRecord) -> EventView:
        if self.origin is None and record.at is not None:
            self.origin = record.at
        if record.source == "db" and record.txid is not None:
            for xmin in commit_xmins(record):
                self.commits_by_xmin.setdefault(xmin, record)
            self.commits_by_txid[record.txid] = record  # keeps its first place
        offset = (
            (record.at - self.origin).total_seconds() * 1000
            if record.at is not None and self.origin is not None
            else 0.0
        )
        view = EventView(
            record=record,
            lane=record.source if record.source in LANE_TITLES else "log",
            title=f"{record.source} {record.kind}",
            summary=self._summary(record),
            offset_ms=offset,
        )
        if record.source == "api":
            commit = self.version_read(record)
            if commit is not None:
                view.version_of = commit.id
                view.version_txid = commit.txid
        return view

    def version_read(self, read: EventRecord) -> EventRecord | None:
        """The commit whose version an API read returned: named by its xmin, else (a
        savepoint's xmin, or none) the newest its snapshot saw, if of the status returned."""
        xmin = read_xmin(read)
        commit = self.commits_by_xmin.get(xmin) if xmin is not None else None
        if commit is not None:
            return commit
        snapshot = read_snapshot(read) if self.all_commits else None
        if snapshot is None:
            return None
        if len(self._txids) != len(self.commits_by_txid):
            self._txids = list(self.commits_by_txid)  # commits came since: in commit order
        index = newest_seen(snapshot, self._txids)
        seen = None if index is None else self.commits_by_txid[self._txids[index]]
        return seen if seen is not None and seen.status == read.status else None

    def extend(self, records: Iterable[EventRecord]) -> list[EventView]:
        records = list(records)
        self.index_commits(records)
        return [self.add(r) for r in records]

    def index_commits(self, records: Iterable[EventRecord]) -> None:
        """Know every commit first, so a read that arrived before its commit still links."""
        for r in records:
            if r.source == "db" and r.txid is not None:
                # The last write of a transaction is the version readers see.
                for xmin in commit_xmins(r):
                    self.commits_by_xmin[xmin] = r
                self.commits_by_txid[r.txid] = r
            if r.at is not None and (self.origin is None or r.at < self.origin):
                self.origin = r.at

    @staticmethod
    def _summary(r: EventRecord) -> str:
        b = r.body
        if r.kind == GAP and r.source != "db":
            return gap_sentence(r)
        if r.source == "db":
            writer = b.get("application_name") or "unknown writer"
            change = commit_change(
                r.kind, r.status, b.get("old_status"), b.get("new_status"), b.get("changed")
            )
            return f"{change} · txn {r.txid} · {writer}"
        if r.source == "api":
            return (
                f"returned {r.status}"
                + (" (no version)" if read_xmin(r) is None else "")
                + (" from its cache" if b.get("cached") is True else "")
                + replica_phrase(r)
            )
        if r.source == "probe":
            if r.kind == "verdict":
                return (
                    f"verdict {str(b.get('verdict', '')).upper()}: expected "
                    f"{b.get('expected')}, observed {b.get('observed')}"
                )
            if r.kind == "expect":
                test = f" ({str(b['test'])[:160]})" if b.get("test") else ""
                return f"a test expects {r.status}{test}"
            if r.kind == "submit":
                return f"submitted → HTTP {b.get('http_status')} {r.status or ''}".rstrip()
            if b.get("error"):
                return str(b["error"])[:160]
            if b.get("http_status") not in (None, 200):
                return f"HTTP {b.get('http_status')}"
            return f"saw {r.status} · {b.get('latency_ms', '?')} ms"
        if r.source == "broker":
            parts = [f"attempt {b['attempt']}" if b.get("attempt") else "", b.get("actor") or ""]
            if b.get("exception"):
                parts.append(str(b["exception"])[:120])
            return " · ".join(p for p in parts if p)
        if r.source == "log":
            message = str(b.get("message") or "")[:160]
            return f"{r.kind.upper()} {b.get('logger', '')}: {message}"
        return r.kind


def commit_change(kind: str, status: str | None, old: object, new: object, changed: object) -> str:
    """What a commit did, as its row and the outline say it."""
    if kind == "insert":
        return f"created {status}"
    if kind == "delete":
        return "deleted"
    if old != new:
        return f"{old} → {new}"
    columns = changed if isinstance(changed, list) else []
    return "changed " + ", ".join(str(c) for c in columns)


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


def gap_sentence(r: EventRecord) -> str:
    """What a ``gap`` event means, in the words the timeline and the task header use."""
    first, last = gap_span(r)
    who = str(r.body.get("process") or "a process")[:64]
    pid = r.body.get("pid")
    dropped = r.body.get("dropped")
    count = dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else "some"
    noun = "event" if count == 1 else "events"
    span = f"at {clock(first)}" if first == last else f"between {clock(first)} and {clock(last)}"
    return (
        f"the {who}{f' (pid {pid})' if isinstance(pid, int) else ''} dropped {count} "
        f"{r.source} {noun} {span}; this history may be incomplete"
    )


def gap_notices(records: Iterable[EventRecord]) -> list[str]:
    """One sentence per ``gap`` event of a history, oldest first (at most 5, then a count)."""
    gaps = [r for r in records if r.kind == GAP and r.source != "db"]
    notices = [gap_sentence(r) for r in gaps[:5]]
    if len(gaps) > 5:
        notices.append(f"and {len(gaps) - 5} more gaps")
    return notices


def pin(views: Iterable[EventView], findings: Iterable[Finding]) -> set[int]:
    """Mark each event view with the kinds of findings it proves; return the ids changed."""
    kinds: dict[int, list[str]] = {}
    for f in findings:
        for event_id in f.events:
            if f.kind not in kinds.setdefault(event_id, []):
                kinds[event_id].append(f.kind)
    changed = set()
    for view in views:
        new = kinds.get(view.id, [])
        if new != view.findings:
            view.findings = new
            changed.add(view.id)
    return changed


# -- collapsed reads ---------------------------------------------------------------------
#
# A poll every 100 ms makes ten identical "returned RUNNING" rows a second; they bury the
# commits. A run of identical reads becomes one row: reads of one source and client that
# returned the same status, version (the row's ``xmin``) and answer, with no event of
# another kind between them (a commit, a broker step or a warning ends every run, so a
# read after a commit is never folded into a read before it). Reads of other clients go
# on between them: the API's and the probe's reads of one poll interleave. A read that
# proves a finding is a row of its own, so a finding still points at its exact events.


def read_signature(view: EventView) -> tuple[object, ...] | None:
    """What makes two reads identical (None: not a read, never folded)."""
    r = view.record
    if r.kind != "read" or r.source not in ("api", "probe"):
        return None
    b = r.body
    client = b.get("client") if r.source == "api" else b.get("run")
    version = read_xmin(r)
    error = str(b["error"])[:200] if b.get("error") else None
    cached = b.get("cached") is True
    standby = b.get("standby") is True
    return (r.source, str(client), r.status, version, b.get("http_status"), error, cached, standby)


@dataclass
class ReadRun:
    """Identical reads shown as one row, oldest first; the row keeps its first event's id.

    ``hidden``: reads of the run not held here (a long page's run that began before the
    events its connection read); they count."""

    views: list[EventView]
    signature: tuple[object, ...]
    hidden: int = 0
    findings: list[str] = field(default_factory=list)  # the kinds its reads prove

    def __post_init__(self) -> None:
        self.refresh_findings()

    def add(self, view: EventView) -> None:
        self.views.append(view)
        self.findings.extend(k for k in view.findings if k not in self.findings)

    def refresh_findings(self) -> None:
        """After the reads' finding marks changed."""
        kinds: list[str] = []
        for v in self.views:
            kinds.extend(k for k in v.findings if k not in kinds)
        self.findings = kinds

    @property
    def first(self) -> EventView:
        return self.views[0]

    @property
    def last(self) -> EventView:
        return self.views[-1]

    @property
    def count(self) -> int:
        return len(self.views) + self.hidden


Row = EventView | ReadRun


class Collapser:
    """Folds views, in time order, into rows; keeps the runs still open so the next
    identical read extends its run (the live timeline's case) instead of adding a row.
    A live page whose events arrive out of time order folds again from an earlier
    place (``dashboard.fragments.LiveRows``)."""

    def __init__(self) -> None:
        self.open: dict[tuple[object, ...], ReadRun] = {}

    def add(self, view: EventView) -> tuple[Row, bool]:
        """The row the view went to and whether it is new (False: it extended a run)."""
        signature = read_signature(view)
        if signature is None:
            self.open.clear()  # a commit, a broker step, a warning: runs end
            return view, True
        lane = signature[:2]
        if view.findings:  # a read that proves something stands alone
            self.open.pop(lane, None)
            return view, True
        run = self.open.get(lane)
        if run is not None and run.signature == signature:
            run.add(view)
            return run, False
        run = ReadRun([view], signature)
        self.open[lane] = run
        return run, True

    def rows(self, views: Iterable[EventView]) -> list[Row]:
        return [row for row, new in (self.add(v) for v in views) if new]


def collapse(views: Iterable[EventView]) -> list[Row]:
    """The rows of a timeline: each event, with runs of identical reads folded."""
    return Collapser().rows(views)


def replica_phrase(read: EventRecord) -> str:
    """How a read a hot standby served is told: from a replica, with how far its replay had
    come (the primary's commit time of the last transaction it had replayed)."""
    if read.body.get("standby") is not True:
        return ""
    replayed = replayed_at(read)
    return f" from a replica, replayed to {clock(replayed)}" if replayed else " from a replica"


def run_summary(run: ReadRun) -> str:
    """What a folded run of reads says (after its count): what they returned, from
    which client, over how long."""
    r = run.first.record
    b = r.body
    if r.source == "api":
        what = f"reads returned {r.status}"
        if read_xmin(r) is None:
            what += " (no version)"
        if b.get("cached") is True:
            what += " from its cache"
        if b.get("standby") is True:
            what += " from a replica"
    elif b.get("error"):
        what = f"polls failed: {str(b['error'])[:120]}"
    elif b.get("http_status") not in (None, 200):
        what = f"polls got HTTP {b.get('http_status')}"
    else:
        what = f"polls saw {r.status}"
    client = b.get("client") if r.source == "api" else None
    if client:
        what += f" · {str(client)[:64]}"
    first, last = r.at, run.last.record.at
    if first is not None and last is not None:
        seconds = (last - first).total_seconds()
        what += f" · {seconds:.1f} s, to {clock(last)}"
    return what
