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
from lifecycle.events import EventRecord, clock
from lifecycle.history import Versions, read_xmin
from lifecycle.words import summary


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
    """Turns events into views, each read linked to the commit whose version it returned
    (``lifecycle.history.Versions``).

    Keep one per task and feed it events in arrival order, whole history first.
    """

    def __init__(self, *, all_commits: bool = True, versions: Versions | None = None) -> None:
        """``all_commits=False``: it is fed part of a long history, with only the commits
        its reads name by xmin, so no read is tied to a commit through its snapshot (the
        newest commit it knows may not be the newest the snapshot saw). ``versions``: the
        commits known already."""
        self.all_commits = all_commits
        self.origin: datetime | None = None
        self.versions = versions if versions is not None else Versions()

    @property
    def commits_by_xmin(self) -> dict[int, EventRecord]:
        return self.versions.by_xmin

    def add(self, record: EventRecord) -> EventView:
        """The record's row: what the history knows of it asked once, then laid out."""
        if self.origin is None and record.at is not None:
            self.origin = record.at
        self.versions.note(record)
        facts = self.versions.facts(record, snapshots=self.all_commits)
        offset = (
            (record.at - self.origin).total_seconds() * 1000
            if record.at is not None and self.origin is not None
            else 0.0
        )
        version = facts.version
        return EventView(
            record=record,
            lane=record.source if record.source in LANE_TITLES else "log",
            title=f"{record.source} {record.kind}",
            summary=summary(
                record, xmin=facts.xmin, standby=facts.standby, replayed_at=facts.replayed_at
            ),
            offset_ms=offset,
            version_of=version.id if version is not None else None,
            version_txid=version.txid if version is not None else None,
        )

    def version_read(self, read: EventRecord) -> EventRecord | None:
        """The commit whose version an API read returned (``Versions.facts``)."""
        return self.versions.facts(read, snapshots=self.all_commits).version

    def extend(self, records: Iterable[EventRecord]) -> list[EventView]:
        records = list(records)
        self.index_commits(records)
        return [self.add(r) for r in records]

    def index_commits(self, records: Iterable[EventRecord]) -> None:
        """Know every commit first, so a read that arrived before its commit still links."""
        records = list(records)
        self.versions.know(records)
        self.reach_back(records)

    def reach_back(self, records: Iterable[EventRecord]) -> None:
        """Start the timeline no later than the earliest of these events."""
        for r in records:
            if r.at is not None and (self.origin is None or r.at < self.origin):
                self.origin = r.at


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
