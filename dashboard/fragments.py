"""The HTML fragments pushed over websockets, rendered by the templates the pages use.

Each fragment is an htmx out-of-band swap aimed at an id of ``dashboard.dom``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from html import escape

from django.template.loader import render_to_string

from dashboard import dom
from dashboard.render import FindingView, event_html
from lifecycle.models import Run
from lifecycle.store import TaskSummary
from lifecycle.timeline import EventView

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


def events_fragment(views: Iterable[EventView], *, first: bool = False) -> str:
    """Append events to the timeline (``first``: also remove its "No event yet")."""
    rows = "".join(_row(v) for v in views)
    if not rows:
        return ""
    remove_empty = f'<p id="{dom.TIMELINE_EMPTY}" hx-swap-oob="delete"></p>' if first else ""
    return f'{remove_empty}<div hx-swap-oob="beforeend:#{dom.TIMELINE_EVENTS}">{rows}</div>'


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
