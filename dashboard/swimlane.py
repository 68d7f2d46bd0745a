"""The swimlane picture beside a task's table: SVG rendered on the server, read without
JavaScript.

One lane per source (the timeline's lanes), a time axis; attempts as bars in the broker
lane from ``start`` to their ``ack``/``fail``/``nack``/``skip``; commits as marks with
their status; reads as dots coloured by the version they returned (the commit they link
to; grey: no version); events that prove a finding ringed in red. Every mark links to its
row in the table (``#event-N``) and carries its event in a ``<title>``: hovering shows
it, and focusing it (Tab) shows the same text under the lanes (CSS only).

The time axis is true but not always even (``time_scale``): a probe polling for seconds
must not squeeze a worker's 100 ms attempt into a few pixels, so a burst of the system's
own events (commits, attempts, broker steps, warnings) that would be drawn narrow gets a
share of the width of its own, shaded and marked ``×N`` with an axis break at its edges;
a stretch with no events at all that would take a fifth of the width is cut out to a
narrow band. Tick labels are placed by the same scale, so each names the time at its line.

A commit's label sits straight above or below its own mark, in rows of the commits lane,
with a leader line to it, and only where it overlaps no other label and is nearer its
own mark than any other (marks a few pixels apart share one label, ``A → B``). A commit
whose label has no room is still reached by hovering or focusing it.

A history too long to draw mark by mark keeps every commit that changed the status,
every event that proves a finding and up to ``MAX_ATTEMPTS`` attempts (those that went
wrong first), and draws the rest as one dot per lane and pixel column, titled with how
many events it stands for. Everything that came from an observed system is escaped.

Nothing is told by colour alone: a read's version is its dot's shape as well as its
colour, a failed attempt ends in ✕ and a finished one in ✓, and an event that proves a
finding wears a dashed ring outside its red one. Under the picture, the same history in
words (``summary``): each lane's count, the attempts and how they ended, and the status
changes, which the picture names as its description for screen readers.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from itertools import pairwise

from dashboard import dom
from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord, clock
from lifecycle.history import ATTEMPT_ENDS
from lifecycle.store.outline import Outline
from lifecycle.timeline.layout import LANE_NOUNS, LANES, EventView

WIDTH = 1000  # the viewBox's width; the picture scales to its container
LEFT = 96  # lane titles
RIGHT = 16
DRAWABLE = WIDTH - LEFT - RIGHT
LANE = 30
TOP = 8
HEADER = 14  # above the lanes when the axis is zoomed or cut: what was done to it
AXIS = 26
TIP = 18  # the line under the axis where a focused mark's event is written
MAX_MARKS = 1500  # events drawn one by one; past it, reads and warnings are bucketed
BUCKET_PX = 4  # a bucketed dot stands for this many pixel columns
COMMIT_PX = 3  # a long history draws one status change per this many pixel columns
MAX_ATTEMPTS = 300  # attempt bars drawn; past it, the failed and unfinished ones first
PALETTE = ("#2b6cb0", "#2f855a", "#b7791f", "#6b46c1", "#c05621", "#2c7a7b", "#b83280")
TERMINAL_COLOURS = {"success": "#2f855a", "failure": "#c53030"}
# A read's version is a shape as well as a colour (PALETTE[i % 7] with SHAPES[i % 4]),
# about 8 px across. Not a <path>: that is a commit's diamond.
SHAPES = (
    '<circle{ring} cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}"/>',
    '<rect{ring} x="{l:.1f}" y="{t:.1f}" width="7" height="7" fill="{fill}"/>',
    '<polygon{ring} points="{x:.1f},{t:.1f} {r:.1f},{b:.1f} {l:.1f},{b:.1f}" fill="{fill}"/>',
    '<polygon{ring} points="{l:.1f},{t:.1f} {r:.1f},{t:.1f} {x:.1f},{b:.1f}" fill="{fill}"/>',
)
SUMMARY_ID = "swimlane-summary"
LIST_AT_MOST = 6  # attempts named one by one in the summary; status changes: twice this
SYSTEM = ("db", "broker", "log")  # the sources whose bursts the axis makes room for

# The time axis.
CUT_SHARE = 0.2  # an empty stretch longer than this share of the history is cut out
CUT_PX = 24  # the width a cut stretch keeps
JOIN_SHARE = 0.05  # the system's events closer than this share of the time: one burst
ZOOM_SHARE = 0.4  # of the drawable width, a zoomed burst's (alone)
ZOOM_TOTAL = 0.6  # of the drawable width, all zoomed bursts' together
MAX_ZOOMS = 3
MIN_ZOOM = 2.0  # a burst is zoomed only if that draws it at least this many times wider
ZOOM_PAD = 0.05  # a zoomed stretch runs this share of its burst beyond it either side
TICK_PX = 110  # at least between ticks
TICK_CHAR_PX = 6.5  # a tick label's character, about (11 px digits)

# Commit labels.
LABEL_CHAR_PX = 7.0  # a 10 px capital's width, about: what a label's room is sized by
LABEL_HEIGHT = 11
ROW = 13  # a row of labels
LEADER = 5  # from a mark's tip to its label
MARK_HALF = 8  # a commit diamond's half height
ROWS = (1, -1, 2, -2)  # tried in this order: above the marks (+), below (-), nearest first
PILE_PX = 4  # marks closer than this overlap: one label names them all
PILE_SPAN = 12  # a pile's width at most (a diamond's): a longer run of marks goes unlabelled
LABEL_GAP = 6  # between labels in a row


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of the time axis: seconds ``t0`` to ``t1`` from the first event, drawn
    from ``x0`` to ``x1``. ``kind``: ``even`` (the picture's common scale), ``zoom`` (a
    burst drawn wider) or ``cut`` (an empty stretch left out)."""

    t0: float
    t1: float
    x0: float
    x1: float
    kind: str

    @property
    def px_per_s(self) -> float:
        return (self.x1 - self.x0) / (self.t1 - self.t0) if self.t1 > self.t0 else 0.0


class Scale:
    """Where a time is drawn: piecewise linear over ``segments`` (``time_scale``)."""

    def __init__(self, start: float, segments: Sequence[Segment]) -> None:
        self.start = start  # the first time, in seconds since the epoch
        self.segments = list(segments)
        self._ends = [s.t1 for s in self.segments]
        self._slopes = [s.px_per_s for s in self.segments]

    def at(self, t: float) -> float:
        """The x of ``t`` seconds after the start."""
        i = min(bisect_left(self._ends, t), len(self.segments) - 1)
        s = self.segments[i]
        if t <= s.t0:
            return s.x0
        if t >= s.t1:
            return s.x1
        return s.x0 + (t - s.t0) * self._slopes[i]

    def x(self, at: datetime | None) -> float:
        return LEFT if at is None else self.at(at.timestamp() - self.start)

    @property
    def broken(self) -> bool:
        return any(s.kind != "even" for s in self.segments)


def time_scale(
    span: float, times: Iterable[float], bursts: Iterable[tuple[float, float]]
) -> list[Segment]:
    """The time axis of a history ``span`` seconds long, as segments from ``LEFT`` to
    ``WIDTH - RIGHT``: ``times`` are when something is drawn, ``bursts`` when the system
    itself acted (an instant or an attempt's interval), all in seconds from the start.

    Empty stretches longer than ``CUT_SHARE`` of the span are cut to ``CUT_PX``; then up
    to ``MAX_ZOOMS`` bursts that the even scale would draw narrower than ``ZOOM_SHARE /
    MIN_ZOOM`` of the width get ``ZOOM_SHARE`` of it (``ZOOM_TOTAL`` shared among
    several), and the rest keeps one even scale."""
    if span <= 0:
        return [Segment(0.0, 1e-3, LEFT, WIDTH - RIGHT, "even")]
    cuts = _cuts(span, times)
    kept = span - sum(b - a for a, b in cuts)
    avail = DRAWABLE - CUT_PX * len(cuts)
    bands = _zooms(span, kept, avail, cuts, bursts)
    while bands:  # drop the zooms that would gain too little once the others are in
        share = _share(len(bands)) * avail
        even_time = kept - sum(b - a for a, b in bands)
        if even_time <= 0:
            bands = []
            break
        even_px_per_s = (avail - share * len(bands)) / even_time
        gaining = [(a, b) for a, b in bands if share / (b - a) >= MIN_ZOOM * even_px_per_s]
        if gaining == bands:
            break
        bands = gaining
    return _lay_out(span, cuts, bands, avail)


def _share(zooms: int) -> float:
    return min(ZOOM_SHARE, ZOOM_TOTAL / zooms) if zooms else 0.0


def _cuts(span: float, times: Iterable[float]) -> list[tuple[float, float]]:
    moments = sorted({0.0, span, *(t for t in times if 0 <= t <= span)})
    gaps = [(a, b) for a, b in pairwise(moments) if b - a > CUT_SHARE * span]
    kept = span - sum(b - a for a, b in gaps)
    # Nothing but the ends (or one instant) would be left: there is nothing to make room for.
    return gaps if kept >= 1e-6 else []


def _zooms(
    span: float,
    kept: float,
    avail: float,
    cuts: list[tuple[float, float]],
    bursts: Iterable[tuple[float, float]],
) -> list[tuple[float, float]]:
    """The stretches to zoom: bursts of two or more of the system's events that the even
    scale would draw too narrow, the busiest first, each with a margin."""
    merged: list[list[float]] = []  # [t0, t1, events]
    for t0, t1 in sorted(bursts):
        if merged and t0 - merged[-1][1] <= JOIN_SHARE * kept:
            merged[-1][1] = max(merged[-1][1], t1)
            merged[-1][2] += 1
        else:
            merged.append([t0, t1, 1])
    px_per_s = avail / kept
    narrow = [
        (t0, t1, n)
        for t0, t1, n in merged
        if n >= 2
        and t1 > t0
        and (t1 - t0) * px_per_s * MIN_ZOOM < ZOOM_SHARE * avail
        and not any(t0 < a < t1 for a, _ in cuts)
    ]
    narrow.sort(key=lambda b: -b[2])
    bands: list[tuple[float, float]] = []
    for t0, t1, _ in sorted(narrow[:MAX_ZOOMS]):
        pad = ZOOM_PAD * (t1 - t0)
        edge = max([0.0, *(b for a, b in cuts if b <= t0)])  # the picture's start, a cut's end
        stop = min([span, *(a for a, b in cuts if a >= t1)])
        after = bands[-1][1] if bands else 0.0
        lo, hi = max(t0 - pad, edge, after), min(t1 + pad, stop)
        # A sliver of the even scale at an edge would be a break for nothing
        if lo - edge < JOIN_SHARE * kept and after <= edge:
            lo = edge
        if stop - hi < JOIN_SHARE * kept:
            hi = stop
        bands.append((lo, hi))
    return bands


def _lay_out(
    span: float, cuts: list[tuple[float, float]], bands: list[tuple[float, float]], avail: float
) -> list[Segment]:
    share = _share(len(bands)) * avail
    pieces: list[tuple[float, float, str]] = []
    t = 0.0
    for a, b, kind in sorted(
        [*((a, b, "cut") for a, b in cuts), *((a, b, "zoom") for a, b in bands)]
    ):
        if a > t:
            pieces.append((t, a, "even"))
        pieces.append((max(a, t), b, kind))
        t = b
    if t < span:
        pieces.append((t, span, "even"))
    even_time = sum(b - a for a, b, kind in pieces if kind == "even")
    even_px = avail - share * len(bands)
    segments = []
    x = float(LEFT)
    for a, b, kind in pieces:
        if kind == "cut":
            width: float = CUT_PX
        elif kind == "zoom":
            width = share
        else:
            width = even_px * (b - a) / even_time if even_time > 0 else 0.0
        segments.append(Segment(a, b, x, x + width, kind))
        x += width
    return segments


def _nice(seconds: float) -> float:
    """The smallest round step of at least ``seconds`` (1, 2, 5 × 10ⁿ; then minutes, hours
    and days)."""
    seconds = max(seconds, 1e-6)  # the clocks' precision
    if seconds > 10:
        for step in (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200):
            if step >= seconds:
                return step
        return 86400 * _nice(seconds / 86400)
    power = 10.0 ** math.floor(math.log10(seconds))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= seconds * (1 - 1e-9))


def _places(step: float) -> int:
    return min(max(0, math.ceil(-math.log10(step) - 1e-9)), 6)


def _offset(seconds: float, step: float) -> str:
    """A time after the first event as the axis names it (``+50 ms``, ``+1.5 s``,
    ``+2:30``), as precise as ``step`` needs."""
    if seconds < 1:
        return f"+{seconds * 1000:.{min(_places(step * 1000), 3)}f} ms"
    places = _places(step)
    if seconds < 60:
        return f"+{seconds:.{places}f} s"
    minutes, rest = divmod(round(seconds, places), 60)
    hours, minutes = divmod(int(minutes), 60)
    sec = f"{rest:0{3 + places if places else 2}.{places}f}"
    return f"+{hours}:{minutes:02d}:{sec}" if hours else f"+{minutes}:{sec}"


def _title(view: EventView) -> str:
    r = view.record
    status = f" {r.status}" if r.status else ""
    return f"#{r.id} {clock(r.at)} {r.source} {r.kind}{status}: {view.summary}"


@dataclass
class _Commit:
    view: EventView
    x: float
    ring: bool
    first: bool  # changed the status or proves a finding: labelled first


@dataclass
class _Label:
    text: str
    x: float  # its centre
    row: int  # ROWS: + above the marks, - below
    mark_x: float  # where its leader ends


def _pile_text(pile: list[_Commit]) -> str:
    """What marks drawn on top of each other say: their statuses in order, and how many
    commits when that is not one a status (``RUNNING → FAILED (3)``)."""
    statuses: list[str] = []
    for c in pile:
        status = (c.view.record.status or c.view.record.kind)[:16]
        if not statuses or statuses[-1] != status:
            statuses.append(status)
    if len(statuses) > 3:
        return f"{statuses[0]} → … → {statuses[-1]} ({len(pile)})"
    text = " → ".join(statuses)
    return text if len(pile) == len(statuses) else f"{text} ({len(pile)})"


def commit_labels(commits: Sequence[_Commit]) -> dict[int, _Label]:
    """Labels for commit marks (in x order), by the event id whose link carries each.

    Marks closer than ``PILE_PX`` to the next are a pile (up to ``PILE_SPAN`` wide) and
    share a label. A label is centred on its mark(s) in the first row of ``ROWS`` where it
    overlaps no other label and no leader crosses it, and only if its centre is nearer
    its own marks than any other; the commits that changed the status or prove a finding
    take their rows first."""
    piles: list[list[_Commit]] = []
    for c in commits:
        if piles and c.x - piles[-1][-1].x < PILE_PX and c.x - piles[-1][0].x < PILE_SPAN:
            piles[-1].append(c)
        else:
            piles.append([c])
    placed: dict[int, list[tuple[float, float]]] = {row: [] for row in ROWS}  # boxes
    leaders: dict[int, list[tuple[float, float]]] = {row: [] for row in ROWS}  # their spans
    labels: dict[int, _Label] = {}
    order = sorted(range(len(piles)), key=lambda i: not any(c.first for c in piles[i]))
    for i in order:
        pile = piles[i]
        text = _pile_text(pile)
        width = len(text) * LABEL_CHAR_PX
        mark_x = (pile[0].x + pile[-1].x) / 2
        left = min(max(mark_x - width / 2, 2.0), WIDTH - 2 - width)
        centre = left + width / 2
        own = min(abs(centre - c.x) for c in pile)
        before = piles[i - 1][-1].x if i else -math.inf
        after = piles[i + 1][0].x if i + 1 < len(piles) else math.inf
        if pile[0].x - before < PILE_PX or after - pile[-1].x < PILE_PX:
            continue  # a pile cut short (a long run of marks): it overlaps the next ones
        if own + 1 >= min(centre - before, after - centre):
            continue  # pushed in from the edge towards another mark: it could be read as its
        box = (left - LABEL_GAP / 2, left + width + LABEL_GAP / 2)
        leader = (min(mark_x, centre), max(mark_x, centre))
        for row in ROWS:
            if any(box[0] < b and a < box[1] for a, b in placed[row]):
                continue
            # Its leader crosses the rows nearer the marks; the leaders of the rows beyond
            # cross its own.
            inner = [r for r in ROWS if r * row > 0 and abs(r) < abs(row)]
            outer = [r for r in ROWS if r * row > 0 and abs(r) > abs(row)]
            if any(leader[0] <= b and a <= leader[1] for r in inner for a, b in placed[r]):
                continue
            if any(box[0] <= b and a <= box[1] for r in outer for a, b in leaders[r]):
                continue
            placed[row].append(box)
            leaders[row].append(leader)
            labels[pile[0].view.id] = _Label(text, centre, row, mark_x)
            break
    return labels


def _label_svg(label: _Label, y: float) -> str:
    """A label and its leader, for the commits lane whose marks are centred on ``y``."""
    if label.row > 0:
        bottom = y - MARK_HALF - LEADER - (label.row - 1) * ROW
        baseline, tip, end = bottom - 2, y - MARK_HALF, bottom
    else:
        top = y + MARK_HALF + LEADER + (-label.row - 1) * ROW
        baseline, tip, end = top + LABEL_HEIGHT - 2, y + MARK_HALF, top
    return (
        f'<line class="leader" x1="{label.mark_x:.1f}" y1="{tip:.1f}" x2="{label.x:.1f}" '
        f'y2="{end:.1f}"/><text class="commit-label" x="{label.x:.1f}" y="{baseline:.1f}" '
        f'text-anchor="middle">{escape(label.text)}</text>'
    )


def swimlane(
    views: Sequence[EventView],
    bars: Sequence[tuple[EventRecord, EventRecord | None]],
    findings: Sequence[Finding],
    roles: dict[str, str],
    outline: Outline | None = None,
) -> str:
    """The SVG of a timeline (``views`` in time order); ``bars``: its attempts, each
    broker start with the step that ended it (``lifecycle.timeline.layout.attempts``);
    ``roles``: each status's role in its lifecycle (``Lifecycle.role``), for the commits'
    colours.

    ``outline``: a long history's (``lifecycle.store.outline``); ``views`` are then only the
    events drawn one by one (commits, attempt steps, gaps, the findings' events) and the
    rest are the outline's columns, one dot per lane and column."""
    stamps = {v.id: v.record.at.timestamp() for v in views if v.record.at is not None}
    if not stamps and outline is None:
        return ""
    if outline is not None:
        start, end = outline.first_us / 1e6, outline.last_us / 1e6
        total = outline.count
    else:
        start, end = min(stamps.values()), max(stamps.values())
        total = len(views)
    proving = {i for f in findings for i in f.events}
    bucket = outline is not None or len(views) > MAX_MARKS

    # Attempts: bars from a start to the step that ended it.
    more_bars = max(len(bars) - MAX_ATTEMPTS, 0)
    if more_bars:  # the ones that went wrong, and those proving a finding
        bars = sorted(
            bars, key=lambda b: (b[1] is not None and b[1].kind == "ack", b[0].id not in proving)
        )[:MAX_ATTEMPTS]
    scale = Scale(start, _segments(start, end, views, stamps, bars, outline))

    # Which events are drawn one by one, which as a bucket's dot.
    commits: list[_Commit] = []
    dots: list[tuple[EventView, float]] = []
    buckets: dict[tuple[str, int], list[EventView]] = defaultdict(list)
    commit_columns: set[int] = set()  # a long history's: one status change per column
    for view in views:
        r = view.record
        if r.at is None or (r.source == "broker" and (r.kind == "start" or r.kind in ATTEMPT_ENDS)):
            continue
        x = scale.at(stamps[r.id] - start)
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
            if outline is None:  # else the outline's columns count it
                buckets[(view.lane, int(x) // BUCKET_PX * BUCKET_PX)].append(view)
            continue
        if r.source == "db":
            commits.append(_Commit(view, x, r.id in proving, changed or r.id in proving))
        else:
            dots.append((view, x))
    commits.sort(key=lambda c: c.x)
    labels = commit_labels(commits)

    # The lanes' heights: the commits lane grows by the rows its labels take.
    up = max((row for row in (lb.row for lb in labels.values()) if row > 0), default=0)
    down = max((-row for row in (lb.row for lb in labels.values()) if row < 0), default=0)
    extent = MARK_HALF + LEADER + 3
    top = TOP + (HEADER if scale.broken else 0)
    lane_y: dict[str, float] = {}  # where a lane's marks are centred
    lane_box: dict[str, tuple[float, float]] = {}  # its top, its height
    y = float(top)
    for name, _ in LANES:
        above = extent + up * ROW if name == "db" and up else LANE / 2
        below = extent + down * ROW if name == "db" and down else LANE / 2
        lane_box[name], lane_y[name] = (y, above + below), y + above
        y += above + below
    axis_y = y
    height = axis_y + AXIS + TIP

    versions: dict[int, int] = {}  # a read's version (the commit it returned): its index
    parts = [
        f'<svg class="swimlane" viewBox="0 0 {WIDTH} {height:.0f}" role="group" '
        f'aria-label="Swimlane of {total} events: each mark links to its row" '
        f'aria-describedby="{SUMMARY_ID}" data-testid="swimlane" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for name, title in LANES:
        y, h = lane_box[name]
        parts.append(
            f'<rect class="lane lane-{name}" x="0" y="{y:.1f}" width="{WIDTH}" height="{h:.1f}"/>'
            f'<text class="lane-title" x="6" y="{lane_y[name] + 4:.1f}">{escape(title)}</text>'
        )
    parts += _axis(scale, top, axis_y)
    for s, finish in bars:
        x1 = scale.x(s.at)
        x2 = scale.x(finish.at) if finish else WIDTH - RIGHT
        outcome = finish.kind if finish else "unfinished"
        y = lane_y["broker"]
        label = escape(
            f"attempt {s.body.get('attempt', '?')} of message {s.body.get('message_id')}: {outcome}"
        )
        sign = OUTCOME_SIGNS.get(outcome, "")
        tail = (
            f'<text class="attempt-end" x="{max(x2, x1 + 2) + 2:.1f}" y="{y + 4:.1f}" '
            f'aria-hidden="true">{sign}</text>'
            if sign
            else ""
        )
        parts.append(
            f'<a href="#{dom.event_id(s.id)}" class="mark"><title>{label}</title>'
            f'<rect class="attempt attempt-{escape(outcome)}" x="{x1:.1f}" y="{y - 7:.1f}" '
            f'width="{max(x2 - x1, 2):.1f}" height="14" rx="3"/>{tail}'
            f'<text class="tip" x="{LEFT}" y="{height - 2:.0f}">{label}</text></a>'
        )
    if more_bars:
        parts.append(
            f'<text class="lane-note" x="{WIDTH - RIGHT}" y="{lane_y["broker"] - 9:.1f}" '
            f'text-anchor="end">{more_bars} more attempts not drawn</text>'
        )
    for c in commits:
        r = c.view.record
        y = lane_y["db"]
        ring = ' class="proves"' if c.ring else ""
        tip = escape(_title(c.view))
        colour = TERMINAL_COLOURS.get(roles.get(r.status or "", ""), "#4a5568")
        named = labels.get(r.id)
        parts.append(
            f'<a href="#{dom.event_id(r.id)}" class="mark"><title>{tip}</title>'
            f"{_proof_ring(c.x, y, 11) if c.ring else ''}"
            f'<path{ring} d="M{c.x:.1f} {y - MARK_HALF:.1f}l6 8l-6 8l-6 -8z" fill="{colour}"/>'
            f"{_label_svg(named, y) if named else ''}"
            f'<text class="tip" x="{LEFT}" y="{height - 2:.0f}">{tip}</text></a>'
        )
    for view, x in dots:
        r = view.record
        ring = ' class="proves"' if r.id in proving else ""
        tip = escape(_title(view))
        cy = lane_y.get(view.lane, lane_y["log"])
        if view.version_of is not None:
            n = versions.setdefault(view.version_of, len(versions))
            dot = SHAPES[n % len(SHAPES)].format(
                ring=ring,
                fill=PALETTE[n % len(PALETTE)],
                x=x,
                y=cy,
                l=x - 3.5,
                r=x + 3.5,
                t=cy - 3.5,
                b=cy + 3.5,
            )
        else:  # no version: a hollow grey dot
            dot = (
                f'<circle class="{"proves " if ring else ""}unversioned" cx="{x:.1f}" '
                f'cy="{cy:.1f}" r="3.5"/>'
            )
        parts.append(
            f'<a href="#{dom.event_id(r.id)}" class="mark"><title>{tip}</title>'
            f"{_proof_ring(x, cy, 8) if ring else ''}{dot}"
            f'<text class="tip" x="{LEFT}" y="{height - 2:.0f}">{tip}</text></a>'
        )
    if outline is not None:
        parts += _columns(outline, scale, lane_y)
    for (lane, column), group in buckets.items():
        first = group[0]
        tip = escape(
            f"{len(group)} events from {clock(first.record.at)}, the first: {_title(first)}"[:300]
        )
        parts.append(
            f'<a href="#{dom.event_id(first.id)}" class="mark"><title>{tip}</title>'
            f'<circle cx="{column}" cy="{lane_y.get(lane, lane_y["log"]):.1f}" '
            f'r="{min(2 + len(group) ** 0.5, 7):.1f}" class="bucket"/></a>'
        )
    parts.append("</svg>")
    parts.append(summary(views, findings, bars, more_bars, outline))
    return "".join(parts)


OUTCOME_SIGNS = {"ack": "✓", "fail": "✕", "nack": "✕", "skip": "–"}


def _proof_ring(x: float, y: float, r: float) -> str:
    """A dashed ring outside a mark that proves a finding: its red ring, as a pattern."""
    return f'<circle class="proof-ring" cx="{x:.1f}" cy="{y:.1f}" r="{r}"/>'


def summary(
    views: Sequence[EventView],
    findings: Sequence[Finding],
    bars: Sequence[tuple[EventRecord, EventRecord | None]],
    more_bars: int,
    outline: Outline | None,
) -> str:
    """The picture in words: how many events of each lane, each attempt and how it ended,
    and the status changes in order (the commits that changed the status)."""
    if outline is not None:
        counts = dict(outline.lanes)
        total = outline.count
    else:
        counts = defaultdict(int)
        for v in views:
            counts[v.lane] += 1
        total = len(views)
    lanes = ", ".join(
        f"{counts[name]:,} {LANE_NOUNS[name] if counts[name] != 1 else LANE_NOUNS[name][:-1]}"
        for name, _ in LANES
        if counts.get(name)
    )

    sentences = [f"{total:,} events: {lanes}." if lanes else f"{total:,} events."]
    shown = []
    for s, finish in sorted(bars, key=lambda b: (b[0].at is None, b[0].at or 0, b[0].id))[
        :LIST_AT_MOST
    ]:
        attempt = str(s.body.get("attempt", "?"))[:8]
        shown.append(f"attempt {attempt} {'ended ' + finish.kind if finish else 'unfinished'}")
    if bars:
        rest = len(bars) + more_bars - len(shown)
        noun = "attempt" if len(bars) + more_bars == 1 else "attempts"
        listed = "; ".join(shown) + (f"; and {rest:,} more" if rest > 0 else "")
        sentences.append(f"{len(bars) + more_bars:,} {noun}: {listed}.")
    changes: list[str] = []
    for v in views:
        r = v.record
        if r.source != "db" or not r.status:
            continue
        if r.kind != "update" or r.body.get("old_status") != r.body.get("new_status"):
            if not changes or changes[-1] != r.status:
                changes.append(r.status[:40])
    if changes:
        if len(changes) > 2 * LIST_AT_MOST:
            skipped = len(changes) - 2 * LIST_AT_MOST
            changes = [*changes[:LIST_AT_MOST], f"… {skipped:,} more …", *changes[-LIST_AT_MOST:]]
        sentences.append(f"Status: {' → '.join(changes)}.")
    proving = {i for f in findings for i in f.events}
    if proving:
        noun = "event proves" if len(proving) == 1 else "events prove"
        sentences.append(f"{len(proving):,} {noun} a finding (ringed).")
    return (
        f'<p class="swimlane-summary muted" id="{SUMMARY_ID}" data-testid="swimlane-summary">'
        f"In words: {escape(' '.join(sentences))}</p>"
    )


def _segments(
    start: float,
    end: float,
    views: Sequence[EventView],
    stamps: dict[int, float],
    bars: Sequence[tuple[EventRecord, EventRecord | None]],
    outline: Outline | None,
) -> list[Segment]:
    """The time axis of what is drawn: every event's time (an outline's columns with
    events: their bounds) and the system's own bursts (its events, its attempts)."""
    times: list[float] = []
    bursts: list[tuple[float, float]] = []
    for v in views:
        if v.id not in stamps:
            continue
        t = stamps[v.id] - start
        times.append(t)
        if v.record.source in SYSTEM:
            bursts.append((t, t))
    for s, finish in bars:
        if s.at is None:
            continue
        t0 = s.at.timestamp() - start
        done = finish.at if finish is not None else None
        t1 = done.timestamp() - start if done is not None else end - start
        times += (t0, t1)
        bursts.append((t0, max(t0, t1)))
    if outline is not None:
        width = outline.width_us / 1e6
        for column in outline.columns:
            if column.count:
                times += (column.index * width, (column.index + 1) * width)
    return time_scale(end - start, times, bursts)


def _axis(scale: Scale, top: float, axis_y: float) -> list[str]:
    """The axis: ticks at round times, each segment by its own scale; the zoomed and cut
    stretches shaded and named above the lanes, and a break (//) where the scale changes."""
    parts = []
    even = next((s.px_per_s for s in scale.segments if s.kind == "even" and s.px_per_s), 0.0)
    for s in scale.segments:
        if s.kind == "even":
            continue
        duration = _offset(s.t1 - s.t0, _nice((s.t1 - s.t0) / 20)).lstrip("+")
        if s.kind == "zoom":
            factor = s.px_per_s / even if even else 0.0
            note = f"×{factor:.0f}" if factor >= 10 else f"×{factor:.1f}"
            title = (
                f"zoomed: these {duration} are drawn {note.lstrip('×')} times as wide as "
                "the rest of the axis"
            )
            text = f"zoomed {note}" if s.x1 - s.x0 >= 80 else note
        else:
            title = f"{duration} without events, cut out of the axis"
            text = "cut"
        parts.append(
            f'<g class="axis-{s.kind}"><title>{escape(title)}</title>'
            f'<rect class="{s.kind}" x="{s.x0:.1f}" y="{top:.1f}" width="{s.x1 - s.x0:.1f}" '
            f'height="{axis_y - top:.1f}"/><text class="zoom-note" x="{(s.x0 + s.x1) / 2:.1f}" '
            f'y="{top - 4:.1f}" text-anchor="middle">{text}</text></g>'
        )
        if s.kind == "cut":
            parts.append(_break((s.x0 + s.x1) / 2, top, axis_y, dashed=False))
            continue
        for x in (s.x0, s.x1):
            if LEFT < x < WIDTH - RIGHT:
                parts.append(_break(x, top, axis_y, dashed=True))
    parts.append(
        f'<line class="axis" x1="{LEFT}" y1="{axis_y:.1f}" x2="{WIDTH - RIGHT}" y2="{axis_y:.1f}"/>'
    )
    for x, text, anchor in _ticks(scale):
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{axis_y:.1f}"/>'
            f'<text class="tick-label" x="{x:.1f}" y="{axis_y + 16:.1f}" '
            f'text-anchor="{anchor}">{text}</text>'
        )
    return parts


def _break(x: float, top: float, axis_y: float, *, dashed: bool) -> str:
    """Where the scale changes: a line across the lanes and a break (//) in the axis."""
    line = (
        f'<line class="break-line" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{axis_y:.1f}"/>'
        if dashed
        else ""
    )
    y = axis_y
    return (
        f'<g class="axis-break">{line}'
        f'<polygon points="{x - 6:.1f},{y + 5:.1f} {x - 2:.1f},{y - 5:.1f} {x + 6:.1f},{y - 5:.1f} '
        f'{x + 2:.1f},{y + 5:.1f}"/>'
        f'<line x1="{x - 6:.1f}" y1="{y + 5:.1f}" x2="{x - 2:.1f}" y2="{y - 5:.1f}"/>'
        f'<line x1="{x + 2:.1f}" y1="{y + 5:.1f}" x2="{x + 6:.1f}" y2="{y - 5:.1f}"/></g>'
    )


def _ticks(scale: Scale) -> list[tuple[float, str, str]]:
    """The labelled ticks, (x, text, anchor): the first event's clock time, where time
    resumes after a cut, and round times after the first, none overlapping another."""
    wanted: list[tuple[int, float, str]] = [(0, float(LEFT), clock(_when(scale.start)))]
    for s in scale.segments:
        if s.kind == "cut":  # where time resumes, to the millisecond
            wanted.append((1, s.x1, _offset(s.t1, 1e-3)))
            continue
        if not s.px_per_s:
            continue
        step = _nice(TICK_PX / s.px_per_s)
        for k in range(math.ceil(s.t0 / step - 1e-6), math.floor(s.t1 / step + 1e-6) + 1):
            if k > 0:
                wanted.append((2, scale.at(k * step), _offset(k * step, step)))
    taken: list[tuple[float, float]] = []
    ticks = []
    for _, x, text in sorted(wanted, key=lambda w: (w[0], w[1])):
        width = len(text) * TICK_CHAR_PX
        if x <= LEFT:
            box, anchor = (x, x + width), "start"
        elif x + width / 2 > WIDTH - 2:
            box, anchor = (x - width, x), "end"
        else:
            box, anchor = (x - width / 2, x + width / 2), "middle"
        if any(box[0] < b + 10 and a - 10 < box[1] for a, b in taken):
            continue
        taken.append(box)
        ticks.append((x, text, anchor))
    return sorted(ticks)


def _when(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _columns(outline: Outline, scale: Scale, lane_y: dict[str, float]) -> list[str]:
    """A long history's dots: one per lane and column of the outline, sized by its count,
    linking to the column's first event (its window loads on the way)."""
    parts = []
    for column in outline.columns:
        if column.first_id is None:
            continue
        x = scale.at((column.index + 0.5) * outline.width_us / 1e6)
        since = clock(outline.column_start(column.index))
        for lane, n in column.lanes.items():
            y = lane_y.get(lane, lane_y["log"])
            noun = "event" if n == 1 else "events"
            tip = escape(f"{n} {lane} {noun} from {since}")
            parts.append(
                f'<a href="#{dom.event_id(column.first_id)}" class="mark"><title>{tip}</title>'
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{min(2 + n**0.5 / 3, 7):.1f}" '
                'class="bucket"/></a>'
            )
    return parts
