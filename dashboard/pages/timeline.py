"""A task's page (``lifecycle.timeline.page.TaskPage``) rendered for the task and run pages:
the context of ``_timeline.html``, ``_findings.html`` and ``_task_header.html``."""

from __future__ import annotations

from typing import Any

from django.utils.safestring import mark_safe

from dashboard.render import (
    INLINE_FIELDS_LIMIT,
    finding_views,
    outline_html,
    rows_html,
    window_html,
)
from dashboard.swimlane import swimlane
from lifecycle.check.rules import COMMIT_MARGIN
from lifecycle.timeline.layout import LANES, collapse
from lifecycle.timeline.page import TaskPage, Window


def page_context(page: TaskPage) -> dict[str, Any]:
    """What the templates show of a task's page."""
    return {
        "task_key": page.task_key,
        "events": page.events,
        "events_html": mark_safe(_events_html(page)),
        "known_until": page.known_until,
        "outline": page.outline,
        "outline_html": mark_safe(_outline_html(page)),
        "findings": finding_views(page.found, page.named),
        "findings_note": _findings_note(page.findings_behind),
        "expected": page.expected,
        "lanes": LANES,
        "status": page.status,
        "event_count": page.event_count,
        "gaps": page.gaps,
        "live": page.live,
        "commit_clock": _commit_clock(page.commit_times),
        "swimlane": mark_safe(_swimlane(page)),
    }


def _events_html(page: TaskPage) -> str:
    """The timeline's list: its rows (a long page's without their fields inline), and the
    windows that load the rest."""
    inline = not page.long and len(page.events) <= INLINE_FIELDS_LIMIT
    return "".join(
        window_html(page.task_key, piece.after, piece.before, piece.count, piece.lanes)
        if isinstance(piece, Window)
        else rows_html(collapse(piece), inline_fields=inline)
        for piece in page.pieces
    )


def _swimlane(page: TaskPage) -> str:
    """Its swimlane; a long page's is drawn once for its outline and findings."""
    o = page.outline

    def draw() -> str:
        return swimlane(page.marks(), page.attempts(), page.found, page.roles, outline=o)

    return draw() if o is None else o.derive(("swimlane", tuple(page.found)), draw)


def _outline_html(page: TaskPage) -> str:
    o = page.outline
    if o is None:
        return ""
    shown = len(page.events)
    return o.derive(("outline", shown), lambda: outline_html(o, shown))


def _commit_clock(commit_times: bool) -> str:
    """Which clock the checker used for the commits: the page says so."""
    if commit_times:
        return (
            "Commits are placed at their commit time, as their server recorded it "
            "(track_commit_timestamp)."
        )
    return (
        "Commits are placed at their write (the commit follows it); proof by clocks alone "
        f"needs a read to begin {COMMIT_MARGIN.total_seconds() * 1000:.0f} ms after it."
    )


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
