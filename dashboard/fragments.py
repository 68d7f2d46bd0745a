"""The HTML fragments pushed over websockets, rendered by the templates the pages use.

Each fragment is an htmx out-of-band swap aimed at an id of ``dashboard.dom``.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from html import escape

from django.template.loader import render_to_string

from dashboard import dom
from dashboard.render import FindingView, event_html, run_html, run_summary_html
from lifecycle.models import Run
from lifecycle.store.eventlog import TaskSummary
from lifecycle.timeline.layout import Collapser, EventView, ReadRun, Row, read_signature

# Each event's row as last rendered: every connection to a task builds the same view of
# it, so with five clients on a task the row is rendered once, not five times.
_rows: dict[tuple[object, ...], str] = {}
ROWS_KEPT = 4096


def _row(view: EventView) -> str:
    key = (
        view.record.id,
        round(view.offset_ms),
        view.version_of,
        view.version_txid,
        tuple(view.findings),
    )
    html = _rows.get(key)
    if html is None:
        html = event_html(view)
        if len(_rows) >= ROWS_KEPT:
            _rows.pop(next(iter(_rows)))
        _rows[key] = html
    return html


def fresh(html: str) -> str:
    """Mark a row sent live: ``lifecycle.js`` moves it to its place in time order."""
    return html.replace('<li class="ev ', '<li class="ev fresh ', 1)


def rows_fragment(rows: list[str], *, first: bool = False) -> str:
    """Append rendered rows to the timeline, each marked ``fresh``."""
    if not rows:
        return ""
    rows_html = "".join(fresh(r) for r in rows)
    remove_empty = f'<p id="{dom.TIMELINE_EMPTY}" hx-swap-oob="delete"></p>' if first else ""
    return f'{remove_empty}<div hx-swap-oob="beforeend:#{dom.TIMELINE_EVENTS}">{rows_html}</div>'


# The last header rendered per task: every connection to a task sends the same one after
# each batch, and the template costs about 0.1 ms.
_headers: dict[str, tuple[str | None, int, tuple[str, ...], str]] = {}


def header_fragment(
    task_key: str, status: str | None, event_count: int, gaps: Iterable[str] = ()
) -> str:
    """The task header; ``gaps``: the sentences of its ``gap`` events (``gap_notices``)."""
    gaps = tuple(gaps)
    last = _headers.get(task_key)
    if last is not None and last[:3] == (status, event_count, gaps):
        return last[3]
    html = render_to_string(
        "dashboard/_task_header.html",
        {"task_key": task_key, "status": status, "event_count": event_count, "gaps": gaps},
    )
    if last is None and len(_headers) >= 1000:
        _headers.pop(next(iter(_headers)))
    _headers[task_key] = (status, event_count, gaps, html)
    return html


def verdict_fragment(run: Run) -> str:
    return render_to_string("dashboard/_verdict.html", {"run": run, "token": uuid.uuid4().hex})


def task_rows_fragment(summaries: Iterable[TaskSummary], shown: set[str]) -> str:
    """Put these rows, newest first, at the top of the list, removing the old ones shown.

    ``shown`` is the set of task keys the page lists; it is updated.
    """
    summaries = list(summaries)
    if not summaries:
        return ""
    deletes = f'<li id="{dom.NO_TASKS}" hx-swap-oob="delete"></li>' if not shown else ""
    # A task key is the observed system's data: escaped like everything it sends.
    deletes += "".join(
        f'<li id="{escape(dom.task_row_id(s.task_key))}" hx-swap-oob="delete"></li>'
        for s in summaries
        if s.task_key in shown
    )
    shown.update(s.task_key for s in summaries)
    rows = "".join(render_to_string("dashboard/_task_row.html", {"summary": s}) for s in summaries)
    return f'{deletes}<div hx-swap-oob="afterbegin:#{dom.TASK_ROWS}">{rows}</div>'


def findings_fragment(findings: list[FindingView], expected: str | None) -> str:
    return render_to_string(
        "dashboard/_findings.html", {"findings": findings, "expected": expected}
    )


def _key(view: EventView) -> tuple[int, int]:
    return (view.at_us, view.id)


def _first_id(row: Row) -> int:
    return row.first.id if isinstance(row, ReadRun) else row.id


def _members(row: Row) -> list[EventView]:
    return row.views if isinstance(row, ReadRun) else [row]


def _shape(row: Row) -> tuple[object, ...]:
    """What the page shows of a row: what must change on the page when this does."""
    if isinstance(row, ReadRun) and row.count > 1:
        return ("run", tuple(v.id for v in row.views), row.hidden, tuple(row.findings))
    view = row.first if isinstance(row, ReadRun) else row
    return ("event", view.id, tuple(view.findings), view.version_of)


def _dom_id(shape: tuple[object, ...], first_id: int) -> str:
    return f"{dom.RUN_PREFIX}{first_id}" if shape[0] == "run" else dom.event_id(first_id)


class LiveRows:
    """What one connection's timeline shows, row by row, kept as the page rendered now
    would show it: runs of identical reads folded as ``collapse`` folds them.

    Events arrive in arrival order, not time order: a read reported through RabbitMQ
    may reach the inspector after the commit that followed it, or a commit after the
    reads that returned its version. An event later than every one shown extends the
    fold; one earlier than the last refolds the page from the last event before it that
    is not a read (no run is open across one), and only the rows that changed are sent:
    a row removed, one re-rendered in place, a run grown, a new row.

    ``seed`` takes the page's state from the client's hello; ``place`` turns new events
    into fragments; ``remark`` re-renders the rows whose reads' finding marks changed (a
    read that proves stands alone, so a run holding one is split)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.collapser = Collapser()  # the fold's state at the end of the page
        self.order: list[EventView] = []  # the events the page shows, in time order
        self.keys: list[tuple[int, int]] = []  # their (time, id), for bisect
        self.rows: dict[int, Row] = {}  # each row by its first event's id
        self.row_of: dict[int, int] = {}  # each event shown -> its row's first id
        self.shown_as: dict[int, tuple[object, ...]] = {}  # each row as the page shows it
        # Events at or before this place are in windows the page has not loaded: a late
        # event there is a row of its own (a refold would not see the window's events).
        self.floor: tuple[int, int] | None = None
        # Each lane's reads, and the events that are not reads, in time order: where a
        # late read falls among its own lane's reads.
        self.lanes: dict[tuple[object, ...], list[tuple[int, int]]] = {}
        self.lane_views: dict[tuple[object, ...], list[EventView]] = {}
        self.closers: list[tuple[int, int]] = []

    @property
    def own_rows(self) -> set[int]:
        """The events the page shows as a row of their own."""
        return {i for i, shape in self.shown_as.items() if shape[0] == "event"}

    @property
    def folded(self) -> dict[int, ReadRun]:
        """Each event the page shows folded in a run (of 2 or more) -> the run."""
        return {
            v.id: row
            for row in self.rows.values()
            if isinstance(row, ReadRun) and row.count > 1
            for v in row.views
        }

    def seed(
        self,
        views: list[EventView],
        known: Callable[[EventView], bool],
        shown: AbstractSet[int],
        dom_runs: dict[int, tuple[int, int]],
    ) -> list[EventView]:
        """Take the page's rows: ``known`` tells the events it has (shown or in a window
        not loaded), ``shown`` the ids it shows, ``dom_runs`` its folded runs (first id ->
        (count, last id)). ``views`` in time order; returns those the page lacks."""
        self._reset()
        position = {v.id: n for n, v in enumerate(views)}
        # Each page run's reads: those of its signature from its first to its last read.
        # Runs of one signature are walked from a frontier, so each view is looked at
        # once per signature however many runs a hello names.
        folded: dict[int, ReadRun] = {}
        frontier: dict[tuple[object, ...], int] = {}
        spans = []
        for first_id, (count, last_id) in dom_runs.items():
            if first_id in position and last_id in position:
                spans.append((position[first_id], position[last_id], count))
        for start, end, count in sorted(spans):
            signature = read_signature(views[start])
            if signature is None or end < start:
                continue
            members = [
                v
                for v in views[max(start, frontier.get(signature, 0)) : end + 1]
                if read_signature(v) == signature and v.id not in folded
            ]
            frontier[signature] = end + 1
            if not members or members[0] is not views[start]:
                continue
            run = ReadRun(members, signature, hidden=max(count - len(members), 0))
            for v in members:
                folded[v.id] = run
        missing: list[EventView] = []
        for view in views:
            page_run = folded.get(view.id)
            if page_run is not None:
                self._show(view, page_run.first.id)
                if page_run.first is view:
                    self.rows[view.id] = page_run
            elif view.id in shown:
                self._show(view, view.id)
                self.rows[view.id] = view
            elif known(view):
                self.window_before(view, inclusive=True)
            else:
                missing.append(view)
        self.shown_as = {i: _shape(row) for i, row in self.rows.items()}
        self._resume()
        return missing

    def window_before(self, view: EventView, *, inclusive: bool = False) -> None:
        """The page holds the events before ``view`` (and it, ``inclusive``) in windows it
        has not loaded, as far as it knows them."""
        at, i = _key(view)
        floor = (at, i) if inclusive else (at, i - 1)
        if self.floor is None or floor > self.floor:
            self.floor = floor

    def _show(self, view: EventView, first_id: int | None) -> None:
        """Put the event in the page's order (and in its row, when it has one yet)."""
        k = _key(view)
        n = bisect.bisect(self.keys, k)
        self.keys.insert(n, k)
        self.order.insert(n, view)
        if first_id is not None:
            self.row_of[view.id] = first_id
        signature = read_signature(view)
        if signature is None:
            bisect.insort(self.closers, k)
        else:
            keys = self.lanes.setdefault(signature[:2], [])
            n = bisect.bisect(keys, k)
            keys.insert(n, k)
            self.lane_views.setdefault(signature[:2], []).insert(n, view)

    def _join(self, view: EventView) -> int | None:
        """Put a late read in the run of its lane it falls in or right after, when it is
        one of that run's (the same read, nothing but reads of other lanes between):
        the first id of that run, else None (the page must be folded again)."""
        signature = read_signature(view)
        if signature is None or view.findings:
            return None
        k = _key(view)
        keys, views = self.lanes.get(signature[:2], []), self.lane_views.get(signature[:2], [])
        n = bisect.bisect_left(keys, k)
        if n == 0 or views[n - 1].findings:
            return None
        before = views[n - 1]
        first_id = self.row_of.get(before.id)
        if first_id is None:
            return None
        row = self.rows.get(first_id)
        if row is None or read_signature(before) != signature:
            return None
        after = views[n + 1] if n + 1 < len(views) else None  # n: the read itself, once shown
        end = _key(after) if after is not None and self.row_of.get(after.id) == first_id else k
        if bisect.bisect(self.closers, _key(before)) != bisect.bisect(self.closers, end):
            return None  # an event that is not a read lies between: it ends the run
        if not isinstance(row, ReadRun):
            row = self.rows[first_id] = ReadRun([row], signature)
        at = bisect.bisect(row.views, k, key=_key)
        row.views.insert(at, view)
        row.refresh_findings()
        self.row_of[view.id] = first_id
        return first_id

    def _resume(self) -> None:
        """The fold's state at the end of the page: each lane's last read is the end of
        an open run, unless an event that is not a read came after it or it proves."""
        self.collapser = Collapser()
        lanes: set[tuple[object, ...]] = set()
        for view in reversed(self.order):
            signature = read_signature(view)
            if signature is None:
                break
            lane = signature[:2]
            if lane in lanes:
                continue
            lanes.add(lane)
            if view.findings:
                continue
            first_id = self.row_of[view.id]
            row = self.rows[first_id]
            if not isinstance(row, ReadRun):
                row = self.rows[first_id] = ReadRun([row], signature)
            if row.last is view:
                self.collapser.open[lane] = row

    def _restart(self, n: int) -> int:
        """Where a refold for a change at ``order[n]`` starts: the last event before it
        that is not a read (no run is open across it), else the page's start."""
        n -= 1
        while n > 0 and read_signature(self.order[n]) is not None:
            n -= 1
        return max(n, 0)

    def _refold(self, n: int) -> dict[int, None]:
        """Fold the page again from ``order[n]`` on, taking in every row that has an
        event there; returns the first ids of the rows before and after."""
        start = self._restart(n + 1)
        while True:
            firsts = {self.row_of[v.id] for v in self.order[start:] if v.id in self.row_of}
            low = min(
                (bisect.bisect_left(self.keys, _key(_members(self.rows[f])[0])) for f in firsts),
                default=start,
            )
            if low >= start:
                break
            start = self._restart(low + 1)
        old = {f: self.rows.pop(f) for f in firsts}
        touched = dict.fromkeys(old)
        for row in Collapser().rows(self.order[start:]):
            first_id = _first_id(row)
            before = old.get(first_id)
            if isinstance(row, ReadRun) and isinstance(before, ReadRun) and before.hidden:
                row.hidden = before.hidden  # the page's run began before the reads held
            self.rows[first_id] = row
            touched[first_id] = None
            for v in _members(row):
                self.row_of[v.id] = first_id
        self._resume()
        return touched

    def place(self, views: Iterable[EventView], *, first: bool = False) -> str:
        """The fragments that show these new events."""
        fresh_views = sorted({v.id: v for v in views if v.id not in self.row_of}.values(), key=_key)
        if not fresh_views:
            return ""
        touched: dict[int, None] = {}
        end = self.keys[-1] if self.keys else None
        rest = []
        for view in fresh_views:
            if self.floor is not None and _key(view) <= self.floor:
                # Before a window the page has not loaded: a row of its own.
                self._show(view, view.id)
                self.rows[view.id] = view
                touched[view.id] = None
            else:
                rest.append(view)
        if rest and (end is None or _key(rest[0]) > end):
            for view in rest:  # after every event shown: the fold goes on
                self._show(view, None)
                row, _ = self.collapser.add(view)
                first_id = _first_id(row)
                self.rows[first_id] = row
                self.row_of[view.id] = first_id
                touched[first_id] = None
        elif rest:  # one came before an event shown
            refold: list[EventView] = []
            for view in rest:
                self._show(view, None)
                joined = self._join(view)
                if joined is None:
                    refold.append(view)
                else:
                    touched[joined] = None
            if refold:  # the page is folded again from there
                touched.update(self._refold(bisect.bisect_left(self.keys, _key(refold[0]))))
        return self._sync(touched, first=first)

    def remark(self, views: Iterable[EventView]) -> str:
        """Re-render the rows of events whose finding marks changed: a read that now
        proves a finding stands alone (its run is split), one that no longer does joins
        its neighbours again."""
        changed = [v for v in views if v.id in self.row_of]
        if not changed:
            return ""
        force = {self.row_of[v.id] for v in changed}
        n = min(bisect.bisect_left(self.keys, _key(v)) for v in changed)
        touched = self._refold(n)
        touched.update(dict.fromkeys(force))
        return self._sync(touched, force=force)

    def _sync(
        self, touched: Iterable[int], *, first: bool = False, force: AbstractSet[int] = frozenset()
    ) -> str:
        """Bring the page's rows ``touched`` (by first id) to what they are now."""
        deletes: list[str] = []
        swaps: list[str] = []
        new: list[Row] = []
        for first_id in touched:
            was = self.shown_as.get(first_id)
            row = self.rows.get(first_id)
            now = _shape(row) if row is not None else None
            if was is not None and (now is None or was[0] != now[0]):
                del self.shown_as[first_id]
                deletes.append(f'<li id="{_dom_id(was, first_id)}" hx-swap-oob="delete"></li>')
                was = None
            if row is None or now is None:
                continue
            self.shown_as[first_id] = now
            if was is None:
                new.append(row)
            elif was == now and first_id not in force:
                continue
            elif isinstance(row, ReadRun) and _grown(was, now):
                count = len(was[1])  # type: ignore[arg-type]
                reads = "".join(event_html(v, inline_fields=False) for v in row.views[count:])
                swaps.append(run_summary_html(row, oob=True))
                swaps.append(
                    f'<div hx-swap-oob="beforeend:#{dom.RUN_PREFIX}{first_id}-events">{reads}</div>'
                )
            else:  # the same row, changed: re-rendered in its place
                swaps.append(_render(row))
        new.sort(key=lambda row: _key(_members(row)[0]))
        # The removals first: a row whose type changed comes back under its new id.
        return (
            "".join(deletes)
            + "".join(swaps)
            + rows_fragment([_render(r) for r in new], first=first)
        )


def _grown(was: tuple[object, ...], now: tuple[object, ...]) -> bool:
    """A run that only gained reads at its end (its list of reads is appended to)."""
    if not was[0] == now[0] == "run":
        return False
    old, new = was[1], now[1]
    assert isinstance(old, tuple) and isinstance(new, tuple)
    return new[: len(old)] == old and was[2:] == now[2:]


def _render(row: Row) -> str:
    if isinstance(row, ReadRun) and row.count > 1:
        return run_html(row)
    return _row(row.first if isinstance(row, ReadRun) else row)
