"""The swimlane picture beside a task's table: SVG rendered on the server, read without
JavaScript.

One lane per source (the timeline's lanes), a time axis; attempts as bars in the broker
lane from ``start`` to their ``ack``/``fail``/``nack``/``skip``; commits as marks with
their status; reads as dots coloured by the version they returned (the commit they link
to; grey: no version); events that prove a finding ringed in red. Every mark links to its
row in the table (``#event-N``) and carries its event in a ``<title>``: hovering shows
it, and focusing it (Tab) shows the same text under the lanes (CSS only).

A history too long to draw mark by mark keeps every commit that changed the status,
every event that proves a finding and up to ``MAX_ATTEMPTS`` attempts (those that went
wrong first), and draws the rest as one dot per lane and pixel column, titled with how
many events it stands for. Everything that came from an observed system is escaped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from lifecycle.checker import Finding
from lifecycle.events import clock
from lifecycle.outline import COLUMNS, Outline
from lifecycle.timeline import ATTEMPT_ENDS, LANES, EventView, attempts

WIDTH = 1000  # the viewBox's width; the picture scales to its container
LEFT = 96  # lane titles
RIGHT = 16
LANE = 30
TOP = 8
AXIS = 26
TIP = 18  # the line under the axis where a focused mark's event is written
MAX_MARKS = 1500  # events drawn one by one; past it, reads and warnings are bucketed
LABEL_ROOM = 70  # pixels a commit's status label needs before the next one
BUCKET_PX = 4  # a bucketed dot stands for this many pixel columns
COMMIT_PX = 3  # a long history draws one status change per this many pixel columns
MAX_ATTEMPTS = 300  # attempt bars drawn; past it, the failed and unfinished ones first
PALETTE = ("#2b6cb0", "#2f855a", "#b7791f", "#6b46c1", "#c05621", "#2c7a7b", "#b83280")
TERMINAL_COLOURS = {"success": "#2f855a", "failure": "#c53030"}


def _x(at: datetime | None, start: float, span: float) -> float:
    if at is None:
        return LEFT
    return LEFT + (at.timestamp() - start) / span * (WIDTH - LEFT - RIGHT)


def _title(view: EventView) -> str:
    r = view.record
    status = f" {r.status}" if r.status else ""
    return f"#{r.id} {clock(r.at)} {r.source} {r.kind}{status}: {view.summary}"


def swimlane(
    views: Sequence[EventView],
    findings: Sequence[Finding],
    roles: dict[str, str],
    outline: Outline | None = None,
) -> str:
    """The SVG of a timeline (``views`` in time order); ``roles``: each status's role in
    its lifecycle (``Lifecycle.role``), for the commits' colours.

    ``outline``: a long history's (``lifecycle.outline``); ``views`` are then only the
    events drawn one by one (commits, attempt steps, gaps, the findings' events) and the
    rest are the outline's columns, one dot per lane and column."""
    timed = [v for v in views if v.record.at is not None]
    if not timed and outline is None:
        return ""
    lanes = [name for name, _ in LANES]
    lane_y = {name: TOP + i * LANE + LANE / 2 for i, name in enumerate(lanes)}
    if outline is not None:
        start, end = outline.first_us / 1e6, outline.last_us / 1e6
        total = outline.count
    else:
        start = min(v.record.at.timestamp() for v in timed)  # type: ignore[union-attr]
        end = max(v.record.at.timestamp() for v in timed)  # type: ignore[union-attr]
        total = len(views)
    span = max(end - start, 0.001)
    height = TOP + len(lanes) * LANE + AXIS + TIP
    proving = {i for f in findings for i in f.events}
    bucket = outline is not None or len(views) > MAX_MARKS
    versions: dict[int, str] = {}
    parts = [
        f'<svg class="swimlane" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="swimlane of {total} events" data-testid="swimlane" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (name, title) in enumerate(LANES):
        top = TOP + i * LANE
        parts.append(
            f'<rect class="lane lane-{name}" x="0" y="{top}" width="{WIDTH}" height="{LANE}"/>'
            f'<text class="lane-title" x="6" y="{top + LANE / 2 + 4}">{escape(title)}</text>'
        )
    # The axis: five ticks, their times.
    axis_y = TOP + len(lanes) * LANE
    for n in range(5):
        x = LEFT + n / 4 * (WIDTH - LEFT - RIGHT)
        at = datetime.fromtimestamp(start + n / 4 * span, tz=UTC)
        anchor = ("start", "middle", "middle", "middle", "end")[n]
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{axis_y}"/>'
            f'<text class="tick-label" x="{x:.1f}" y="{axis_y + 16}" text-anchor="{anchor}">'
            f"{clock(at)}</text>"
        )
    # Attempts: bars from a start to the step that ended it.
    bars = attempts(outline.steps if outline is not None else (v.record for v in views))
    if len(bars) > MAX_ATTEMPTS:  # the ones that went wrong, and those proving a finding
        bars.sort(key=lambda b: (b[1] is not None and b[1].kind == "ack", b[0].id not in proving))
        parts.append(
            f'<text class="lane-note" x="{WIDTH - RIGHT}" y="{lane_y["broker"] - 9}" '
            f'text-anchor="end">{len(bars) - MAX_ATTEMPTS} more attempts not drawn</text>'
        )
        bars = bars[:MAX_ATTEMPTS]
    for s, finish in bars:
        x1 = _x(s.at, start, span)
        x2 = _x(finish.at if finish else None, start, span) if finish else WIDTH - RIGHT
        outcome = finish.kind if finish else "unfinished"
        y = lane_y["broker"]
        label = escape(
            f"attempt {s.body.get('attempt', '?')} of message {s.body.get('message_id')}: {outcome}"
        )
        parts.append(
            f'<a href="#event-{s.id}" class="mark"><title>{label}</title>'
            f'<rect class="attempt attempt-{escape(outcome)}" x="{x1:.1f}" y="{y - 7}" '
            f'width="{max(x2 - x1, 2):.1f}" height="14" rx="3"/>'
            f'<text class="tip" x="{LEFT}" y="{height - 2}">{label}</text></a>'
        )
    last_label = float("-inf")
    buckets: dict[tuple[str, int], list[EventView]] = defaultdict(list)
    commit_columns: set[int] = set()  # a long history's: one status change per column
    for view in views:
        r = view.record
        if r.at is None or (r.source == "broker" and r.kind in ("start", *ATTEMPT_ENDS)):
            continue
        x = _x(r.at, start, span)
        y = lane_y.get(view.lane, lane_y["log"])
        changed = r.source == "db" and (
            r.kind != "update" or r.body.get("old_status") != r.body.get("new_status")
        )
        keep = r.id in proving or r.kind == "gap" or (r.source == "db" and (changed or not bucket))
        if bucket and changed and r.id not in proving:
            # Status changes by the thousand (a retry loop) would cover the lane: one per
            # COMMIT_PX columns, and every one into a terminal status.
            column = int(x) // COMMIT_PX
            terminal = roles.get(r.status or "", "") in TERMINAL_COLOURS
            keep = terminal or column not in commit_columns
            commit_columns.add(column)
        if bucket and not keep:
            if outline is not None:
                continue  # the outline's columns count it
            buckets[(view.lane, int(x) // BUCKET_PX * BUCKET_PX)].append(view)
            continue
        ring = ' class="proves"' if r.id in proving else ""
        tip = escape(_title(view))
        if r.source == "db":
            role = roles.get(r.status or "", "")
            colour = TERMINAL_COLOURS.get(role, "#4a5568")
            # A label only where the previous one has room to end (the title has it all).
            text = ""
            if x - last_label >= LABEL_ROOM:
                last_label = x
                text = (
                    f'<text class="commit-label" x="{x + 7:.1f}" y="{y - 6}">'
                    f"{escape((r.status or r.kind)[:16])}</text>"
                )
            parts.append(
                f'<a href="#event-{r.id}" class="mark"><title>{tip}</title>'
                f'<path{ring} d="M{x:.1f} {y - 8}l6 8l-6 8l-6 -8z" fill="{colour}"/>{text}'
                f'<text class="tip" x="{LEFT}" y="{height - 2}">{tip}</text></a>'
            )
            continue
        if view.version_of is not None:
            colour = versions.setdefault(view.version_of, PALETTE[len(versions) % len(PALETTE)])
        else:
            colour = "#a0aec0"
        parts.append(
            f'<a href="#event-{r.id}" class="mark"><title>{tip}</title>'
            f'<circle{ring} cx="{x:.1f}" cy="{y}" r="4" fill="{colour}"/>'
            f'<text class="tip" x="{LEFT}" y="{height - 2}">{tip}</text></a>'
        )
    if outline is not None:
        parts.extend(_columns(outline, lane_y))
    for (lane, column), group in buckets.items():
        first = group[0]
        y = lane_y.get(lane, lane_y["log"])
        tip = escape(
            f"{len(group)} events from {clock(first.record.at)}, the first: {_title(first)}"[:300]
        )
        parts.append(
            f'<a href="#event-{first.id}" class="mark"><title>{tip}</title>'
            f'<circle cx="{column}" cy="{y}" r="{min(2 + len(group) ** 0.5, 7):.1f}" '
            'class="bucket"/></a>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _columns(outline: Outline, lane_y: dict[str, float]) -> list[str]:
    """A long history's dots: one per lane and column of the outline, sized by its count,
    linking to the column's first event (its window loads on the way)."""
    parts = []
    step = (WIDTH - LEFT - RIGHT) / COLUMNS
    for column in outline.columns:
        if column.first_id is None:
            continue
        x = LEFT + (column.index + 0.5) * step
        since = clock(outline.column_start(column.index))
        for lane, n in column.lanes.items():
            y = lane_y.get(lane, lane_y["log"])
            noun = "event" if n == 1 else "events"
            tip = escape(f"{n} {lane} {noun} from {since}")
            parts.append(
                f'<a href="#event-{column.first_id}" class="mark"><title>{tip}</title>'
                f'<circle cx="{x:.1f}" cy="{y}" r="{min(2 + n**0.5 / 3, 7):.1f}" '
                'class="bucket"/></a>'
            )
    return parts
