"""The HTML fragments pushed over websockets, rendered by the templates the pages use.

Each fragment is an htmx out-of-band swap aimed at an id of ``dashboard.dom``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from html import escape

from django.template.loader import render_to_string

from dashboard import dom
from dashboard.render import FindingView, event_html, run_html, run_summary_html
from lifecycle.models import Run
from lifecycle.store import TaskSummary
from lifecycle.timeline import Collapser, EventView, ReadRun, Row, read_signature

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


class LiveRows:
    """What one connection's timeline shows, row by row, so a live read that is the same
    as the last one extends that run of reads instead of adding a row.

    ``seed`` takes the page's state from the client's hello; ``place`` turns new events
    into fragments: a new row, a row that becomes a run, or a run that grows (its count
    and span replaced, the read appended to its list of reads, which the client loads
    on opening)."""

    def __init__(self) -> None:
        self.collapser = Collapser()
        self.folded: dict[int, ReadRun] = {}  # event id -> the run (of 2 or more) it is in
        self.own_rows: set[int] = set()  # events the page shows as a row of their own

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
        self.collapser = Collapser()
        self.folded = {}
        position = {v.id: n for n, v in enumerate(views)}
        # Each page run's reads: those of its signature from its first to its last read.
        # Runs of one signature are walked from a frontier, so each view is looked at
        # once per signature however many runs a hello names.
        runs: dict[int, ReadRun] = {}
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
                if read_signature(v) == signature
            ]
            frontier[signature] = end + 1
            if not members or members[0] is not views[start]:
                continue
            run = ReadRun(members, signature, hidden=max(count - len(members), 0))
            runs[views[start].id] = run
            for v in members:
                self.folded[v.id] = run
        self.own_rows = set(shown) - set(self.folded)
        missing = []
        for view in views:
            if view.id not in self.folded and not known(view):
                missing.append(view)
                continue
            self.collapser.add(view)
        # The open run of each lane, as the page shows it: the page's run row that ends
        # with its last read, else the read's own row; a run the page shows otherwise is
        # closed (the next read starts a row).
        for lane, run in list(self.collapser.open.items()):
            page_run = self._as_shown(run)
            if page_run is None:
                del self.collapser.open[lane]
            else:
                self.collapser.open[lane] = page_run
        for lane, (run, closer) in list(self.collapser.closed.items()):
            page_run = self._as_shown(run)
            if page_run is None:
                del self.collapser.closed[lane]
            else:
                self.collapser.closed[lane] = (page_run, closer)
        return missing

    def _as_shown(self, run: ReadRun) -> ReadRun | None:
        """The run as the page shows its end: the page's run row ending with its last
        read, or the read's own row; None when the page shows it otherwise."""
        page_run = self.folded.get(run.last.id)
        if page_run is not None and page_run.last.id == run.last.id:
            return page_run
        if run.count == 1 and run.first.id in self.own_rows:
            return run
        return None

    def place(self, views: Iterable[EventView], *, first: bool = False) -> str:
        """The fragments that show these new events. Rows new in this call are rendered
        once, as they end up; swaps aim only at rows the page had before."""
        new: dict[int, Row] = {}  # by first id, in order
        deleted: list[int] = []
        grown: dict[int, ReadRun] = {}
        appended: dict[int, list[EventView]] = {}
        for view in views:
            row, is_new = self.collapser.add(view)
            if is_new:
                new[view.id] = row
                self.own_rows.add(view.id)
                continue
            assert isinstance(row, ReadRun)
            run_id = row.first.id
            self.folded[view.id] = row
            self.folded.setdefault(run_id, row)
            if run_id in new:
                continue  # rendered below, as it ends up
            if run_id in self.own_rows:  # the page's row of one read becomes the run's
                self.own_rows.discard(run_id)
                deleted.append(run_id)
                new[run_id] = row
            else:
                grown[run_id] = row
                appended.setdefault(run_id, []).append(view)
        for run_id, row in new.items():  # a run's row, not its first read's
            if isinstance(row, ReadRun) and row.count > 1:
                self.own_rows.discard(run_id)
        extra = [f'<li id="{dom.event_id(i)}" hx-swap-oob="delete"></li>' for i in deleted]
        for run_id, run in grown.items():
            extra.append(run_summary_html(run, oob=True))
            reads = "".join(event_html(v, inline_fields=False) for v in appended[run_id])
            extra.append(
                f'<div hx-swap-oob="beforeend:#{dom.RUN_PREFIX}{run_id}-events">{reads}</div>'
            )
        rows = [run_html(row) if isinstance(row, ReadRun) else _row(row) for row in new.values()]
        # The removals first: a run that became one replaces its first read's row.
        return "".join(extra) + rows_fragment(rows, first=first)

    def remark(self, views: Iterable[EventView]) -> str:
        """Re-render events whose finding marks changed, where the page shows them: their
        own rows; a run holding a read that now proves a finding is split, so that read
        is a row of its own (a finding points at its exact events)."""
        parts = []
        runs: dict[int, ReadRun] = {}
        for view in views:
            run = self.folded.get(view.id)
            if run is not None:
                runs[run.first.id] = run
            elif view.id in self.own_rows:
                parts.append(event_html(view))
        rows: list[str] = []
        for run in runs.values():
            run.refresh_findings()
            if run.hidden or not any(v.findings for v in run.views):
                parts.append(run_summary_html(run, oob=True))  # marks cleared, or not all held
                continue
            parts.append(f'<li id="{dom.RUN_PREFIX}{run.first.id}" hx-swap-oob="delete"></li>')
            pieces = Collapser().rows(run.views)
            for piece in pieces:
                if isinstance(piece, ReadRun) and piece.count > 1:
                    rows.append(run_html(piece))
                    for v in piece.views:
                        self.folded[v.id] = piece
                else:
                    view = piece.first if isinstance(piece, ReadRun) else piece
                    rows.append(_row(view))
                    self.folded.pop(view.id, None)
                    self.own_rows.add(view.id)
            self._replace_open(run, pieces[-1])
        return "".join(parts) + rows_fragment(rows)

    def _replace_open(self, run: ReadRun, last: Row) -> None:
        """The lane's open (or last closed) run was split: its last piece takes its place
        (a read that proves stands alone: the run is closed)."""
        for lane, open_run in list(self.collapser.open.items()):
            if open_run is run:
                if isinstance(last, ReadRun):
                    self.collapser.open[lane] = last
                else:
                    del self.collapser.open[lane]
        for lane, (closed_run, closer) in list(self.collapser.closed.items()):
            if closed_run is run:
                if isinstance(last, ReadRun):
                    self.collapser.closed[lane] = (last, closer)
                else:
                    del self.collapser.closed[lane]


def _order(view: EventView) -> tuple[int, int]:
    return (view.at_us, view.id)
