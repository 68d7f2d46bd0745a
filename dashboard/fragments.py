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
from lifecycle.timeline import Collapser, EventView, ReadRun, read_signature

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


def events_fragment(views: Iterable[EventView], *, first: bool = False) -> str:
    """Append events to the timeline (``first``: also remove its "No event yet")."""
    return rows_fragment([_row(v) for v in views], first=first)


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


def replace_events_fragment(views: Iterable[EventView]) -> str:
    """Re-render events already shown (their finding marks changed), in place."""
    return "".join(event_html(v) for v in views)


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
        not loaded), ``shown`` the ids it shows as rows, ``dom_runs`` its folded runs
        (first id -> (count, last id)). Returns the views the page lacks, in order."""
        self.collapser = Collapser()
        self.folded = {}
        self.own_rows = set(shown)
        by_id = {v.id: v for v in views}
        ranges: dict[tuple[object, ...], list[tuple[EventView, EventView]]] = {}
        for first_id, (_, last_id) in dom_runs.items():
            first, last = by_id.get(first_id), by_id.get(last_id)
            signature = read_signature(first) if first is not None else None
            if first is not None and last is not None and signature is not None:
                ranges.setdefault(signature, []).append((first, last))
        runs: dict[int, ReadRun] = {}
        missing = []
        for view in views:
            signature = read_signature(view)
            home = None
            for first, last in ranges.get(signature, ()) if signature else ():
                if _order(first) <= _order(view) <= _order(last):
                    home = first
            if home is not None:
                run = runs.setdefault(home.id, ReadRun([], signature))  # type: ignore[arg-type]
                run.views.append(view)
                self.folded[view.id] = run
            elif not known(view):
                missing.append(view)
                continue
            self.collapser.add(view)
        # The open run of each lane, as the page shows it: from the page's own run row
        # of it, else the read's own row; a run the page shows otherwise is closed.
        for lane, run in list(self.collapser.open.items()):
            page_run = next(
                (runs[v.id] for v in reversed(run.views) if v.id in runs and runs[v.id].views),
                None,
            )
            if page_run is not None and page_run.last.id == run.last.id:
                self.collapser.open[lane] = page_run
            elif run.count == 1 and run.first.id in self.own_rows:
                continue
            else:
                del self.collapser.open[lane]
        return missing

    def place(self, views: Iterable[EventView], *, first: bool = False) -> str:
        """The fragments that show these new events."""
        rows: list[str] = []
        extra: list[str] = []
        for view in views:
            row, new = self.collapser.add(view)
            if new:
                rows.append(_row(view))
                self.own_rows.add(view.id)
                continue
            assert isinstance(row, ReadRun)
            for v in row.views:
                self.folded[v.id] = row
            run_id = row.first.id
            if row.count == 2 and run_id in self.own_rows:
                # The read's own row becomes the run's.
                self.own_rows.discard(run_id)
                extra.append(f'<li id="{dom.event_id(run_id)}" hx-swap-oob="delete"></li>')
                rows.append(run_html(row))
            else:
                extra.append(run_summary_html(row, oob=True))
                extra.append(
                    f'<div hx-swap-oob="beforeend:#{dom.RUN_PREFIX}{run_id}-events">'
                    f"{event_html(view, inline_fields=False)}</div>"
                )
        # A run that became one replaces its first read's row, which this removes first.
        return "".join(extra) + rows_fragment(rows, first=first)

    def remark(self, views: Iterable[EventView]) -> str:
        """Re-render events whose finding marks changed, where the page shows them: their
        own rows, and for a read folded into a run, the run's summary."""
        parts = []
        runs: dict[int, ReadRun] = {}
        for view in views:
            run = self.folded.get(view.id)
            if run is not None:
                runs[run.first.id] = run
            elif view.id in self.own_rows:
                parts.append(event_html(view))
        parts.extend(run_summary_html(run, oob=True) for run in runs.values())
        return "".join(parts)


def _order(view: EventView) -> tuple[int, int]:
    return (view.at_us, view.id)
