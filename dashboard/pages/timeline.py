"""The timeline and findings of one task, as the task and run pages show them
(``_timeline.html``, ``_findings.html``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils import timezone
from django.utils.safestring import mark_safe

from dashboard.render import (
    INLINE_FIELDS_LIMIT,
    finding_views,
    outline_html,
    rows_html,
    window_html,
)
from dashboard.swimlane import swimlane
from lifecycle import statuses
from lifecycle.check import findings
from lifecycle.check.rules import COMMIT_MARGIN, Finding, commit_time
from lifecycle.events import EventRecord
from lifecycle.history import XID_WRAP, current_status, in_time_order, read_xmin
from lifecycle.store import eventlog, outline
from lifecycle.store.outline import Outline, cursor_of, from_us
from lifecycle.timeline.layout import (
    LANES,
    EventView,
    TimelineBuilder,
    collapse,
    gap_notices,
    pin,
)

# A task that finished this recently may still get events (late reads, a redelivery).
STILL_LIVE_SECONDS = 600


def timeline_context(
    task_key: str, expected: str | None = None, *, html: bool = True, whole: bool = False
) -> dict[str, Any]:
    """What the task and run pages show of a task (``html``: with its events rendered;
    the JSON timeline does without). A history longer than ``outline.WINDOWED_ABOVE`` is
    shown as its outline and windows (``windowed_context``) unless ``whole`` is asked."""
    if whole and outline.longer_than(task_key, outline.WHOLE_MAX):
        whole = False  # too long to show at once: the outline and windows
    if html and not whole and outline.longer_than(task_key, outline.WINDOWED_ABOVE):
        windowed = windowed_context(task_key, expected)
        if windowed is not None:
            return windowed
    records = in_time_order(eventlog.task_events(task_key))
    views = TimelineBuilder().extend(records)
    found = findings.stored_findings(task_key, records, expected)
    pin(views, found)
    status = current_status(records)
    lifecycle = statuses.of_history(records)
    picture = ""
    if html:
        roles = {r.status: lifecycle.role(r.status) or "" for r in records if r.status}
        picture = swimlane(views, found, roles)
    return {
        "swimlane": mark_safe(picture),
        "task_key": task_key,
        "events": views,
        "events_html": mark_safe(
            rows_html(collapse(views), inline_fields=len(views) <= INLINE_FIELDS_LIMIT)
        )
        if html
        else "",
        "known_until": max((r.id for r in records), default=0),
        "outline": None,
        "findings": finding_views(found, records),
        "finding_objects": found,
        "expected": expected,
        "lanes": LANES,
        "status": status,
        "event_count": len(records),
        "gaps": gap_notices(records),
        "live": not lifecycle.is_terminal(status) or _recent(records),
        "commit_clock": _commit_clock(records),
    }


def _commit_clock(records: Sequence[EventRecord]) -> str:
    """Which clock the checker used for the commits: the page says so."""
    if any(commit_time(r) is not None for r in records):
        return (
            "Commits are placed at their commit time, as their server recorded it "
            "(track_commit_timestamp)."
        )
    return (
        "Commits are placed at their write (the commit follows it); proof by clocks alone "
        f"needs a read to begin {COMMIT_MARGIN.total_seconds() * 1000:.0f} ms after it."
    )


def _recent(records: Sequence[EventRecord]) -> bool:
    last = records[-1].received_at if records else None
    return last is not None and (timezone.now() - last).total_seconds() < STILL_LIVE_SECONDS


def windowed_context(task_key: str, expected: str | None) -> dict[str, Any] | None:
    """A long history's page: the outline (every lane's count, every commit, every
    finding, the swimlane) and the first and last windows of events; the windows between
    load as they scroll into view, or when a link or a mark points into one."""
    o = outline.read_outline(task_key)
    if o is None or not o.windows:
        return None
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
    builder = TimelineBuilder(all_commits=False)
    builder.origin = from_us(o.first_us)
    versions = {x for r in [*head, *tail] if (x := read_xmin(r)) is not None}
    commits = [
        m.record(task_key)
        for m in o.commits
        if m.txid is not None and m.txid % XID_WRAP in versions
    ]
    # A version no transaction's id names was written in a savepoint: its commit says so.
    unnamed = versions - {c.txid % XID_WRAP for c in commits if c.txid is not None}
    builder.index_commits(
        [*commits, *(outline.commits_of_versions(task_key, unnamed) if unnamed else [])]
    )
    head_views = [builder.add(r) for r in head]
    tail_views = [builder.add(r) for r in tail]
    pin([*head_views, *tail_views], found)
    # A window wherever the first or the last events read are as many as asked for: the
    # outline's counts are of a moment ago, and events that came since must not fall
    # between the rows and the windows.
    parts = [rows_html(collapse(head_views), inline_fields=False)]
    tail_full = len(tail) == outline.TAIL
    if len(windows) == 1:
        if tail_full:
            rest = max(o.count - len(head) - len(tail), 1)
            parts.append(window_html(task_key, head_end, cursor_of(tail[0]), rest))
    else:
        if len(head) == outline.HEAD:
            rest = max(first.count - len(head), 1)
            parts.append(window_html(task_key, head_end, first.before, rest))
        for w in windows[1:-1]:
            parts.append(window_html(task_key, w.after, w.before, w.count, w.lanes))
        if tail_full:
            rest = max(last.count - len(tail), 1)
            parts.append(window_html(task_key, last.after, cursor_of(tail[0]), rest))
    parts.append(rows_html(collapse(tail_views), inline_fields=False))
    changes = o.derive(
        "changes", lambda: [m.record(task_key) for m in o.commits if m.changes_status]
    )
    by_id = {r.id: r for r in [*changes, *proving.values()]}
    lifecycle = statuses.of_history(changes)
    status = _status(changes, tail)
    roles = {r.status: lifecycle.role(r.status) or "" for r in changes if r.status}
    picture = o.derive(
        ("swimlane", tuple(found)),
        lambda: swimlane(_marks(o, changes, proving, found), found, roles, outline=o),
    )
    listing = o.derive(
        ("outline", len(head) + len(tail)), lambda: outline_html(o, len(head) + len(tail))
    )
    return {
        "swimlane": mark_safe(picture),
        "task_key": task_key,
        "events": [*head_views, *tail_views],
        "events_html": mark_safe("".join(parts)),
        "known_until": o.last_id,
        "outline": o,
        "outline_html": mark_safe(listing),
        "findings": finding_views(found, list(by_id.values())),
        "finding_objects": found,
        "findings_note": _findings_note(behind),
        "expected": expected,
        "lanes": LANES,
        "status": status,
        "event_count": o.count,
        "gaps": gap_notices(o.gaps),
        "live": not lifecycle.is_terminal(status) or _recent(tail),
        "commit_clock": _commit_clock(
            changes[:1] if any(m.committed_at for m in o.commits) else []
        ),
    }


def _marks(
    o: Outline,
    changes: list[EventRecord],
    proving: dict[int, EventRecord],
    found: list[Finding],
) -> list[EventView]:
    """The events a long history's swimlane draws one by one, in time order: the commits
    that changed the status, the gaps and the findings' events (the attempts' bars come
    from the outline's steps)."""
    builder = TimelineBuilder(all_commits=False)
    builder.origin = from_us(o.first_us)
    chosen = {r.id: r for r in [*changes, *o.gaps, *proving.values()]}
    views = [builder.add(r) for r in in_time_order(chosen.values())]
    pin(views, found)
    return views


def _status(commits: Sequence[EventRecord], tail: Sequence[EventRecord]) -> str | None:
    """``current_status`` of a history known by its commits and its last events."""
    committed = next((r.status for r in reversed(commits) if r.status), None)
    return committed or current_status(tail)


def _findings_note(behind: int | None) -> str:
    """What the findings of a long history are as of (the maintainer checks it)."""
    if behind is None:
        return (
            "This long history has not been checked yet: the maintainer checks it in the "
            "background, and its findings appear here on a reload."
        )
    if behind:
        return (
            f"These findings are of the history {behind:,} event{'s' if behind != 1 else ''} "
            "ago: the maintainer is checking the newer ones."
        )
    return ""


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
