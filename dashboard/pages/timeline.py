"""The timeline and findings of one task, as the task and run pages show them
(``_timeline.html``, ``_findings.html``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils import timezone
from django.utils.safestring import mark_safe

from dashboard.render import INLINE_FIELDS_LIMIT, events_html, finding_views
from dashboard.swimlane import swimlane
from lifecycle import findings, lifecycles, store
from lifecycle.checker import COMMIT_MARGIN, commit_time
from lifecycle.events import EventRecord
from lifecycle.timeline import (
    LANES,
    TimelineBuilder,
    current_status,
    gap_notices,
    in_time_order,
    pin,
)

# A task that finished this recently may still get events (late reads, a redelivery).
STILL_LIVE_SECONDS = 600


def timeline_context(
    task_key: str, expected: str | None = None, *, html: bool = True
) -> dict[str, Any]:
    """What the task and run pages show of a task (``html``: with its events rendered;
    the JSON timeline does without)."""
    records = in_time_order(store.task_events(task_key))
    views = TimelineBuilder().extend(records)
    found = findings.stored_findings(task_key, records, expected)
    pin(views, found)
    status = current_status(records)
    lifecycle = lifecycles.of_history(records)
    picture = ""
    if html:
        roles = {r.status: lifecycle.role(r.status) or "" for r in records if r.status}
        picture = swimlane(views, found, roles)
    return {
        "swimlane": mark_safe(picture),
        "task_key": task_key,
        "events": views,
        "events_html": mark_safe(
            events_html(views, inline_fields=len(views) <= INLINE_FIELDS_LIMIT)
        )
        if html
        else "",
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
