"""Where a live connection to a task's page starts (``read_start``), short or long: the
events the page may lack, laid out as the page lays them out, and what its header and
findings need. A long history (``outline.WINDOWED_ABOVE``) is followed from its last
events only: it is neither loaded nor checked here; its findings are the maintainer's.

The web sends what the page lacks (``dashboard.consumers``); nothing here is HTML.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lifecycle.check import findings
from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord
from lifecycle.history import StatusTracker, in_time_order, read_xmin
from lifecycle.models import Run
from lifecycle.runtime import allocator
from lifecycle.store import eventlog, outline
from lifecycle.timeline.layout import EventView, TimelineBuilder
from lifecycle.timeline.page import Window
from lifecycle.words import gap_notices

LONG_TAIL = 1000  # a long page's last events a connection reads, to extend its last run


@dataclass
class PageHolds:
    """What the page in the browser holds, as its hello said and as this connection sent
    since: the events it shows (``sent``), every event up to ``known_until`` (a long page:
    those in its windows), and its folded runs (first id -> (count, last id))."""

    sent: set[int] = field(default_factory=set)
    known_until: int = 0
    runs: dict[int, tuple[int, int]] = field(default_factory=dict)

    def knows(self, view: EventView) -> bool:
        return view.id in self.sent or view.id <= self.known_until

    def end(self) -> int:
        """The newest event the page says it has."""
        return max([self.known_until, *self.sent, *(last for _, last in self.runs.values())])


@dataclass
class LiveHistory:
    """What a connection knows of a task's history: read at its catch-up (``read_start``),
    grown by the live events that follow."""

    task_key: str
    long: bool = False
    expected: str | None = None
    records: list[EventRecord] = field(default_factory=list)  # short: all; long: the last
    builder: TimelineBuilder = field(default_factory=TimelineBuilder)  # lays out as the page
    status: StatusTracker = field(default_factory=StatusTracker)
    gaps: list[str] = field(default_factory=list)  # sentences: where it may be incomplete
    earlier: int = 0  # a long history's events before ``records`` (the header counts them)
    # Long: the maintainer's findings and the events they name (short: checked live).
    found: list[Finding] = field(default_factory=list)
    named: dict[int, EventRecord] = field(default_factory=dict)
    # Long: more came after the page than a tail's worth; those were not read, and the
    # page may lack events before the last ones.
    behind: bool = False
    page_end: EventRecord | None = None  # the newest event the page says it has
    sought: set[int] = field(default_factory=set)  # versions whose commits were looked up

    @property
    def count(self) -> int:
        return self.earlier + len(self.records)

    def explaining(self) -> list[EventRecord]:
        """The events the findings' sentences may name."""
        return [*self.records, *self.named.values()] if self.named else self.records

    def to_send(self, missing: list[EventView]) -> tuple[list[EventView], bool]:
        """Of the events the page lacks (in time order), those to send, and whether a
        window must stand before them for the rest: a long page gets its tail's worth
        (``outline.TAIL``) at most; what it lacks before those it loads on demand."""
        if not self.long:
            return missing, False
        cut = len(missing) > outline.TAIL
        missing = missing[-outline.TAIL :]
        return missing, bool(missing) and (cut or self.behind)

    def versions_to_seek(self, records: Iterable[EventRecord]) -> set[int]:
        """The versions these reads of a long history returned whose commits its builder
        lacks (a version no commit wrote is sought once)."""
        if not self.long:
            return set()
        unknown = {
            x
            for r in records
            if (x := read_xmin(r)) is not None
            and x not in self.builder.commits_by_xmin
            and x not in self.sought
        }
        self.sought |= unknown
        if len(self.sought) > 100_000:
            self.sought.clear()
        return unknown

    def seek_versions(self, versions: set[int]) -> None:
        self.builder.index_commits(outline.commits_of_versions(self.task_key, versions))


def read_start(task_key: str, run_id: int | None, long: bool, page: PageHolds) -> LiveHistory:
    """Where a connection to a task's page (a run's, with ``run_id``) starts; ``long``: the
    page is a long one, whatever the history's length now."""
    expected = (
        Run.objects.filter(pk=run_id).values_list("expected", flat=True).first()
        if run_id is not None
        else eventlog.expected_for(task_key)
    )
    if long or outline.longer_than(task_key, outline.WINDOWED_ABOVE):
        with allocator.heavy():  # its memory goes back once no heavy reader runs
            return _long_start(task_key, expected, page)
    records = in_time_order(eventlog.task_events(task_key))
    return LiveHistory(
        task_key,
        expected=expected,
        records=records,
        status=StatusTracker(records),
        gaps=gap_notices(records),
    )


def _long_start(task_key: str, expected: str | None, page: PageHolds) -> LiveHistory:
    """What a connection to a long history reads, whatever its hello says: the last
    ``LONG_TAIL`` events, at most ``outline.TAIL`` more that came after ``known_until``
    (none when more did), the first reads of the page's runs that end among those (a run
    may have begun before them), and the page's newest event."""
    page_end = page.end()
    recent = outline.window_events(task_key, None, None, LONG_TAIL, newest=True)
    newer = eventlog.events_after(task_key, page.known_until, outline.TAIL + 1)
    behind = len(newer) > outline.TAIL
    if behind:
        newer = []
    read = {r.id for r in [*recent, *newer]}
    firsts = set(
        sorted({first for first, (_, last) in page.runs.items() if last in read} - read)[
            : outline.TAIL
        ]
    )
    wanted = sorted(firsts | ({page_end} if page_end else set()))
    found = eventlog.events_by_id(wanted) if wanted else {}
    found = {i: r for i, r in found.items() if r.task_key == task_key}
    ends = {i: r for i, r in found.items() if i in firsts}
    by_id = {r.id: r for r in [*ends.values(), *recent, *newer]}
    records = in_time_order(by_id.values())
    versions = {x for r in records if (x := read_xmin(r)) is not None}
    first = outline.span(task_key)
    builder = TimelineBuilder(all_commits=False)
    builder.origin = outline.from_us(first[0]) if first else None
    builder.index_commits(outline.commits_of_versions(task_key, versions))
    status = StatusTracker(eventlog.last_statuses(task_key))
    status.update(records)
    stored, named = maintainers_findings(task_key, expected)
    count = eventlog.task_stats([task_key]).get(task_key, (0, 0))[0]
    return LiveHistory(
        task_key,
        long=True,
        expected=expected,
        records=records,
        builder=builder,
        status=status,
        gaps=gap_notices(eventlog.task_gaps(task_key)),
        earlier=count - len(records),
        found=stored,
        named=named,
        behind=behind,
        page_end=by_id.get(page_end) or found.get(page_end),
    )


def maintainers_findings(
    task_key: str, expected: str | None
) -> tuple[list[Finding], dict[int, EventRecord]]:
    """A long history's findings as the maintainer last stored them, and the events they
    name."""
    found = findings.latest_stored(task_key, expected)
    ids = sorted({i for f in found for i in f.events})
    named = eventlog.events_by_id(ids) if ids else {}
    return found, {i: r for i, r in named.items() if r.task_key == task_key}


def window_before(
    task_key: str, page_end: EventRecord | None, first_sent: EventRecord
) -> Window | None:
    """The events between the page's newest one (None: the start) and the first one a
    catch-up sends, when there are any."""
    after = outline.cursor_of(page_end) if page_end is not None else None
    before = outline.cursor_of(first_sent)
    if after is not None and after >= before:
        return None
    count = outline.count_between(task_key, after, before)
    return Window(after, before, count) if count else None
