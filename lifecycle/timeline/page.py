"""A task's page from one call (``read_page``): what the task and run pages show of its
history, as a ``TaskPage``. A short history is shown whole; a long one (more than
``outline.WINDOWED_ABOVE`` events) as its outline, its first and last events, and windows
between them that load on demand (``part_views`` lays out what a window loads).

Each page gathers what the history holds first, from the findings down to the lifecycle
(with what the history knows of each row's events, ``lifecycle.history.Versions``), and
then lays its rows out. The web renders a ``TaskPage`` (``dashboard.pages.timeline``, and
the JSON API); nothing here is HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from django.utils import timezone

from lifecycle import statuses
from lifecycle.check import findings
from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord
from lifecycle.history import (
    XID_WRAP,
    Versions,
    attempts,
    commit_time,
    current_status,
    in_time_order,
    read_xmin,
)
from lifecycle.store import eventlog, outline
from lifecycle.store.outline import Cursor, Outline, cursor_of, from_us
from lifecycle.timeline.layout import EventView, TimelineBuilder, pin
from lifecycle.words import gap_notices

# A task that finished this recently may still get events (late reads, a redelivery).
STILL_LIVE_SECONDS = 600


@dataclass(frozen=True)
class Window:
    """Events of a long history between two places (``after``, ``before``: excluded;
    None: open) that the page does not hold: about ``count``, by lane when known."""

    after: Cursor | None
    before: Cursor | None
    count: int
    lanes: dict[str, int] | None = None


class Expected(Enum):
    """``expected`` for a page whose caller has none to give: the task's own, what its
    latest run or test expects (``eventlog.expected_for``)."""

    OF_TASK = "of the task"


OF_TASK = Expected.OF_TASK


@dataclass
class TaskPage:
    """What a task's page shows of its history."""

    task_key: str
    expected: str | None
    events: list[EventView]  # the rows the page holds, in time order, findings pinned
    # The timeline's list in order: runs of rows (collapsed as shown) and windows between.
    pieces: list[list[EventView] | Window]
    found: list[Finding]
    named: list[EventRecord]  # the events the findings' sentences may name
    status: str | None
    event_count: int  # of the whole history
    known_until: int  # the page knows every event up to this id
    gaps: list[str]  # sentences: where the history may be incomplete
    live: bool  # more events may come
    commit_times: bool  # commits are placed at their commit time (else at their write)
    roles: dict[str, str]  # each status's role in the task's lifecycle
    outline: Outline | None = None  # a long history's
    # A long history's findings are the maintainer's: how many events they are behind
    # (0: current; None: never checked).
    findings_behind: int | None = 0
    # A long history's events its swimlane draws one by one, in time order: the commits
    # that changed the status, the gaps and the findings' events (the rest are the
    # outline's columns).
    drawn: list[EventRecord] = field(default_factory=list, repr=False)

    @property
    def long(self) -> bool:
        return self.outline is not None

    def marks(self) -> list[EventView]:
        """The events the swimlane draws one by one, laid out, in time order."""
        if self.outline is None:
            return self.events
        builder = TimelineBuilder(all_commits=False)
        builder.origin = from_us(self.outline.first_us)
        views = [builder.add(r) for r in self.drawn]
        pin(views, self.found)
        return views

    def attempts(self) -> list[tuple[EventRecord, EventRecord | None]]:
        """Its attempts, the swimlane's bars: each broker start with the step that ended
        it (a long history's from its outline)."""
        o = self.outline
        return attempts(o.steps if o is not None else [v.record for v in self.events])


def read_page(
    task_key: str, expected: str | None | Expected = OF_TASK, *, whole: bool = False
) -> TaskPage:
    """A task's page; a long history as its outline and windows unless ``whole`` is
    asked (and it is at most ``outline.WHOLE_MAX`` events). ``expected``: what the
    findings hold the history to (by default what the task's run or test expects)."""
    return _windowed(task_key, expected, whole) or whole_page(task_key, expected)


def whole_page(task_key: str, expected: str | None | Expected = OF_TASK) -> TaskPage:
    """A task's page with every event of its history, however many."""
    # What the history holds first: its events, their commits' versions, its status and
    # gaps, its findings, its lifecycle.
    if expected is OF_TASK:
        expected = eventlog.expected_for(task_key)
    records = in_time_order(eventlog.task_events(task_key))
    versions = Versions(records)
    status = current_status(records)
    commit_times = any(commit_time(r) is not None for r in records)
    gaps = gap_notices(records)
    found = findings.stored_findings(task_key, records, expected)
    lifecycle = statuses.of_history(records)
    terminal = lifecycle.is_terminal(status)
    roles = {r.status: lifecycle.role(r.status) or "" for r in records if r.status}
    # Then its rows, laid out.
    builder = TimelineBuilder(versions=versions)
    builder.reach_back(records)
    views = [builder.add(r) for r in records]
    pin(views, found)
    return TaskPage(
        task_key=task_key,
        expected=expected,
        events=views,
        pieces=[views],
        found=found,
        named=records,
        status=status,
        event_count=len(records),
        known_until=max((r.id for r in records), default=0),
        gaps=gaps,
        live=not terminal or _recent(records),
        commit_times=commit_times,
        roles=roles,
    )


def _windowed(task_key: str, expected: str | None | Expected, whole: bool) -> TaskPage | None:
    """A long history's page: the outline (every lane's count, every commit, every
    finding) and the first and last windows of events; the windows between load as they
    scroll into view, or when a link or a mark points into one. None: a history to show
    whole."""
    if whole and not outline.longer_than(task_key, outline.WHOLE_MAX):
        return None
    if not outline.longer_than(task_key, outline.WINDOWED_ABOVE):
        return None
    o = outline.read_outline(task_key)
    if o is None or not o.windows:
        return None
    if expected is OF_TASK:
        expected = eventlog.expected_for(task_key)
    # What the history holds first: the maintainer's findings and the events they name,
    # the first and last events, the commits whose versions they read, the status changes.
    stored = findings.stored_check(task_key, o.count, o.last_id, expected)
    found, behind = stored if stored is not None else ([], None)
    proving = eventlog.events_by_id(sorted({i for f in found for i in f.events}))
    proving = {i: r for i, r in proving.items() if r.task_key == task_key}
    windows = o.windows
    first, last = windows[0], windows[-1]
    head = outline.window_events(task_key, None, first.before, outline.HEAD)
    head_end = cursor_of(head[-1])
    tail_after = last.after if len(windows) > 1 else head_end
    tail = outline.window_events(task_key, tail_after, None, outline.TAIL, newest=True)
    origin = from_us(o.first_us)
    xmins = {x for r in [*head, *tail] if (x := read_xmin(r)) is not None}
    commits = [
        m.record(task_key) for m in o.commits if m.txid is not None and m.txid % XID_WRAP in xmins
    ]
    # A version no transaction's id names was written in a savepoint: its commit says so.
    unnamed = xmins - {c.txid % XID_WRAP for c in commits if c.txid is not None}
    if unnamed:
        commits += outline.commits_of_versions(task_key, unnamed)
    versions = Versions(commits)
    changes = o.derive(
        "changes", lambda: [m.record(task_key) for m in o.commits if m.changes_status]
    )
    by_id = {r.id: r for r in [*changes, *proving.values()]}
    drawn = in_time_order({r.id: r for r in [*changes, *o.gaps, *proving.values()]}.values())
    # The last status committed, else the last one its last events reported.
    status = next((r.status for r in reversed(changes) if r.status), None)
    status = status or current_status(tail)
    commit_times = any(m.committed_at for m in o.commits) and any(
        commit_time(r) is not None for r in changes[:1]
    )
    gaps = gap_notices(o.gaps)
    lifecycle = statuses.of_history(changes)
    terminal = lifecycle.is_terminal(status)
    roles = {r.status: lifecycle.role(r.status) or "" for r in changes if r.status}
    # Then its rows, laid out.
    builder = TimelineBuilder(all_commits=False, versions=versions)
    builder.origin = origin
    builder.reach_back(commits)
    views = [builder.add(r) for r in [*head, *tail]]
    pin(views, found)
    head_views, tail_views = views[: len(head)], views[len(head) :]
    return TaskPage(
        task_key=task_key,
        expected=expected,
        events=views,
        pieces=[head_views, *_windows(o, head, tail), tail_views],
        found=found,
        named=list(by_id.values()),
        status=status,
        event_count=o.count,
        known_until=o.last_id,
        gaps=gaps,
        live=not terminal or _recent(tail),
        commit_times=commit_times,
        roles=roles,
        outline=o,
        findings_behind=behind,
        drawn=drawn,
    )


def _windows(o: Outline, head: list[EventRecord], tail: list[EventRecord]) -> list[Window]:
    """A long page's windows, between its first and its last rows: wherever the first or
    the last events read are as many as asked for (the outline's counts are of a moment
    ago, and events that came since must not fall between the rows and the windows),
    and the outline's windows between."""
    windows = o.windows
    first, last = windows[0], windows[-1]
    head_end = cursor_of(head[-1])
    tail_full = len(tail) == outline.TAIL
    if len(windows) == 1:
        rest = max(o.count - len(head) - len(tail), 1)
        return [Window(head_end, cursor_of(tail[0]), rest)] if tail_full else []
    after_head = max(first.count - len(head), 1)
    before_tail = max(last.count - len(tail), 1)
    return [
        *([Window(head_end, first.before, after_head)] if len(head) == outline.HEAD else []),
        *(Window(w.after, w.before, w.count, w.lanes) for w in windows[1:-1]),
        *([Window(last.after, cursor_of(tail[0]), before_tail)] if tail_full else []),
    ]


def _recent(records: Sequence[EventRecord]) -> bool:
    last = records[-1].received_at if records else None
    return last is not None and (timezone.now() - last).total_seconds() < STILL_LIVE_SECONDS


def part_views(
    task_key: str, records: list[EventRecord], found: list[Finding] | None = None
) -> list[EventView]:
    """Rows of part of a history, laid out as on its page: times from the history's
    first event, reads linked to the commits whose versions they returned, findings
    pinned (``found``, else as the maintainer last stored them)."""
    known = outline.span(task_key)
    if known is None:
        return []
    versions = {x for r in records if (x := read_xmin(r)) is not None}
    builder = TimelineBuilder(all_commits=False)
    builder.origin = from_us(known[0])
    builder.index_commits(outline.commits_of_versions(task_key, versions))
    views = [builder.add(r) for r in records]
    if found is None:
        found = findings.latest_stored(task_key, eventlog.expected_for(task_key))
    pin(views, found)
    return views
