"""The one place that renders a timeline event, a status chip and a finding to HTML, for
the pages and the live push alike.

Plain Python rather than a Django template: a task page may hold thousands of events, and
the template engine spends about 0.6 ms on each (3 s for 5,000 here), this about 0.01 ms.
Everything that came from an observed system is escaped here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from urllib.parse import urlencode

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from dashboard import dom
from lifecycle import statuses
from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord, clock
from lifecycle.store.outline import EPOCH, WHOLE_MAX, Cursor, Mark, Outline, format_cursor, from_us
from lifecycle.timeline.layout import (
    LANE_NOUNS,
    LANES,
    EventView,
    ReadRun,
    Row,
    field_text,
    run_summary,
)
from lifecycle.words import commit_change

LANE_INDEX = {name: i for i, (name, _) in enumerate(LANES)}
_escaped: dict[str, str] = {}  # kinds and statuses: a small set, escaped once each


def _esc(text: str) -> str:
    found = _escaped.get(text)
    if found is None:
        found = escape(text)
        if len(_escaped) < 1000:
            _escaped[text] = found
    return found


# A shape for each role a status plays in its lifecycle (``Lifecycle.role``); a status no
# lifecycle knows gets a dot.
SYMBOLS = {"initial": "○", "running": "◐", "other": "◑", "success": "✓", "failure": "✕"}
EV = dom.EVENT_PREFIX


def status_chip(status: str | None) -> str:
    """A status as a chip: its shape and colour say its role in the configured lifecycles."""
    return _status_chip(status, statuses.role_of(status))


# What a screen reader says after the status: its role, which sighted readers take from
# the chip's shape and colour.
ROLE_WORDS = {
    "initial": "initial status",
    "running": "in progress",
    "other": "in between",
    "success": "success",
    "failure": "failure",
}


@functools.lru_cache(maxsize=256)
def _status_chip(status: str | None, role: str | None) -> str:
    label = status or "unknown"
    return format_html(
        '<span class="chip st-{}" data-status="{}" data-role="{}">'
        '<span aria-hidden="true">{}</span> {}<span class="vh"> ({})</span></span>',
        role or "unknown",
        label,
        role or "unknown",
        SYMBOLS.get(role or "", "•"),
        label,
        ROLE_WORDS.get(role or "", "a status the lifecycle does not name"),
    )


VERDICT_CHIPS = {
    "pass": mark_safe(
        '<span class="chip v-pass"><span class="vh">verdict: </span>'
        '<span aria-hidden="true">✓</span> pass</span>'
    ),
    "fail": mark_safe(
        '<span class="chip v-fail"><span class="vh">verdict: </span>'
        '<span aria-hidden="true">✕</span> fail</span>'
    ),
}
RUNNING_CHIP = mark_safe(
    '<span class="chip v-running"><span class="vh">verdict: </span>'
    '<span aria-hidden="true">◌</span> running</span>'
)


def verdict_chip(verdict: str | None) -> str:
    """A verdict as a chip: constant markup, whatever the verdict's text."""
    return VERDICT_CHIPS.get(verdict or "", RUNNING_CHIP)


def _fields(r: EventRecord) -> list[tuple[str, str]]:
    """What the card does not show already: times, transaction, and the whole body."""
    at = r.at
    pairs = [("event", f"#{r.id}"), ("at", at.isoformat() if at else "—")]
    if r.received_at is not None:
        pairs.append(("received", r.received_at.isoformat()))
    if r.txid is not None:
        pairs.append(("txid", str(r.txid)))
    pairs.extend((key, field_text(value)) for key, value in r.body.items())
    return pairs


def _fields_text(r: EventRecord) -> str:
    """The popover's lines, ``name: value`` (a value's own line breaks continue it)."""
    return "\n".join(f"{key}: {value}" for key, value in _fields(r))


# Up to this many events, each card carries all its fields in its title (a tooltip without
# JavaScript, a popover with it). A longer timeline leaves them out (they were 60 % of a
# 5,000-event page) and the popover fetches them from the event's JSON on first hover.
INLINE_FIELDS_LIMIT = 1000


def event_html(ev: EventView, *, inline_fields: bool = True) -> str:
    r = ev.record
    event_id = r.id
    status = r.status
    at = r.at
    # source and lane come from a closed set (the ingestor refuses others); the rest is
    # escaped.
    attrs = f' data-status="{_esc(status)}"' if status else ""
    version_of = ev.version_of
    if version_of is not None:
        attrs += f' data-version-of="{version_of}"'
        version = (
            f'<a class="version-link" href="#{EV}{version_of}" data-testid="version-link">'
            f"↖ version of txn {ev.version_txid}</a>"
        )
    else:
        version = ""
    lane = ev.lane
    if ev.findings:
        classes = f"ev lane-{lane} has-finding"
        findings = "".join(
            f'<a class="badge finding" href="#{dom.FINDINGS}" title="this event proves a finding">'
            f"⚠ {escape(kind)}</a>"
            for kind in ev.findings
        )
    else:
        classes, findings = f"ev lane-{lane}", ""
    chip = status_chip(status) if status else ""
    kind = _esc(r.kind)
    at_us = round(at.timestamp() * 1_000_000) if at is not None else 0
    time_text = clock(at)
    title = f' title="{escape(_fields_text(r))}"' if inline_fields else ""
    return (
        f'<li class="{classes}" id="{EV}{event_id}" data-testid="event" '
        f'data-event-id="{event_id}" data-at="{at_us}" data-source="{r.source}" '
        f'data-kind="{kind}"{attrs} style="--lane: {LANE_INDEX[lane]}">'
        f'<a class="ev-time" href="#{EV}{event_id}">{time_text}'
        f"<small>+{ev.offset_ms:.0f} ms</small></a>"
        f'<div class="ev-card"{title}>'
        f'<span class="ev-lane">{lane}</span>{chip}'
        f'<span class="ev-kind">{kind}</span>'
        f'<span class="ev-summary">{escape(ev.summary)}</span>{version}{findings}'
        "</div></li>"
    )


def events_html(views: Iterable[EventView], *, inline_fields: bool = True) -> str:
    return "".join([event_html(v, inline_fields=inline_fields) for v in views])


RUN = dom.RUN_PREFIX


def run_summary_html(run: ReadRun, *, oob: bool = False) -> str:
    """A folded run's count, span and version: the part a live read that extends the run
    replaces (``oob``: as an out-of-band swap)."""
    first = run.first
    version = (
        f' <a class="version-link" href="#{EV}{first.version_of}" data-testid="version-link">'
        f"↖ version of txn {first.version_txid}</a>"
        if first.version_of is not None
        else ""
    )
    findings = "".join(
        f'<a class="badge finding" href="#{dom.FINDINGS}" title="one of these reads proves a'
        f' finding">⚠ {escape(kind)}</a>'
        for kind in run.findings
    )
    swap = ' hx-swap-oob="true"' if oob else ""
    return (
        f'<span class="run-summary" id="{RUN}{first.id}-summary" data-testid="run-summary" '
        f'data-count="{run.count}" data-last-id="{run.last.id}" '
        f'data-last-at="{run.last.at_us}"{swap}>'
        f'<span class="run-count">×{run.count}</span> '
        f'<span class="ev-summary">{escape(run_summary(run))}</span>{version}{findings}</span>'
    )


def run_html(run: ReadRun, *, inline_fields: bool = True) -> str:
    """A run of identical reads as one row; it expands in place into its reads' rows (a
    run of one is the read's own row)."""
    if run.count == 1:
        return event_html(run.first, inline_fields=inline_fields)
    first = run.first
    r = first.record
    lane = first.lane
    status = f' data-status="{_esc(r.status)}"' if r.status else ""
    chip = status_chip(r.status) if r.status else ""
    classes = f"ev lane-{lane} run" + (" has-finding" if run.findings else "")
    at_us = round(r.at.timestamp() * 1_000_000) if r.at is not None else 0
    return (
        f'<li class="{classes}" id="{RUN}{r.id}" data-testid="read-run" data-event-id="{r.id}" '
        f'data-at="{at_us}" data-source="{r.source}" data-kind="read"{status} '
        f'style="--lane: {LANE_INDEX[lane]}">'
        f'<a class="ev-time" href="#{RUN}{r.id}">{clock(r.at)}'
        f"<small>+{first.offset_ms:.0f} ms</small></a>"
        f'<div class="ev-card"><span class="ev-lane">{lane}</span>{chip}'
        f'<span class="ev-kind">reads</span>{run_summary_html(run)}'
        f'<button type="button" class="run-toggle" data-testid="run-toggle" '
        f'aria-expanded="false" aria-controls="{RUN}{r.id}-events">show each</button></div>'
        f'<ol class="run-events" id="{RUN}{r.id}-events" hidden></ol></li>'
    )


def row_html(row: Row, *, inline_fields: bool = True) -> str:
    if isinstance(row, ReadRun):
        return run_html(row, inline_fields=inline_fields)
    return event_html(row, inline_fields=inline_fields)


def rows_html(rows: Iterable[Row], *, inline_fields: bool = True) -> str:
    return "".join([row_html(r, inline_fields=inline_fields) for r in rows])


def fields_json(r: EventRecord) -> list[tuple[str, str]]:
    """The popover's fields for an event whose card does not carry them."""
    return _fields(r)


# -- findings ------------------------------------------------------------------------------

TRANSACTION = re.compile(r"transaction (\d+)")
CLOCK = re.compile(r"\b\d\d:\d\d:\d\d\.\d{3}\b")


@dataclass(frozen=True)
class EventRef:
    id: int
    label: str


@dataclass(frozen=True)
class FindingView:
    kind: str
    cause: str | None
    message: str
    html: SafeString  # the message with its mentions linked to their events
    refs: tuple[EventRef, ...]
    fix: str = ""  # what usually fixes it (lifecycle.check.registry), escaped by the template


def _clock(record: EventRecord) -> str:
    return clock(record.at)


def _label(record: EventRecord) -> str:
    what = f"{record.source} {record.kind}"
    if record.txid is not None:
        what += f" (txn {record.txid})"
    return f"{what} at {_clock(record)}"


def linked_message(finding: Finding, by_id: dict[int, EventRecord]) -> SafeString:
    """The message, escaped, with "transaction N" and "HH:MM:SS.mmm" linked to events."""
    own = [by_id[i] for i in finding.events if i in by_id]
    by_txid = {r.txid: r.id for r in by_id.values() if r.source == "db" and r.txid is not None}
    by_clock = {_clock(r): r.id for r in reversed(own)}

    def link(match: re.Match[str], event_id: int | None) -> str:
        text = match.group(0)
        return f'<a href="#{EV}{event_id}">{text}</a>' if event_id is not None else text

    html = escape(finding.message)
    html = TRANSACTION.sub(lambda m: link(m, by_txid.get(int(m.group(1)))), html)
    html = CLOCK.sub(lambda m: link(m, by_clock.get(m.group(0))), html)
    return mark_safe(html)


def finding_views(findings: Sequence[Finding], records: Sequence[EventRecord]) -> list[FindingView]:
    by_id = {r.id: r for r in records}
    return [
        FindingView(
            kind=f.kind,
            cause=f.cause,
            message=f.message,
            html=linked_message(f, by_id),
            refs=tuple(EventRef(i, _label(by_id[i])) for i in f.events if i in by_id),
            fix=f.fix,
        )
        for f in findings
    ]


# -- a long timeline: its windows and its outline ------------------------------------------


def window_html(
    task_key: str,
    after: Cursor | None,
    before: Cursor | None,
    count: int,
    lanes: dict[str, int] | None = None,
) -> str:
    """A window of events not loaded yet: it loads (``lifecycle.js``, from ``data-url``)
    when it scrolls into view, when its button is pressed, or when a link points at one
    of its events."""
    from django.urls import reverse

    query = urlencode(
        {
            "after": format_cursor(after) if after else "",
            "before": format_cursor(before) if before else "",
            "count": count,
        }
    )
    url = f"{reverse('dashboard:window', args=[task_key])}?{query}"
    since = clock(from_us(after[0])) if after else "the start"
    until = clock(from_us(before[0])) if before else "the end"
    noun = "event" if count == 1 else "events"
    detail = ""
    if lanes:
        detail = " · ".join(
            f"{lanes[name]:,} {LANE_NOUNS[name]}" for name, _ in LANES if lanes.get(name)
        )
        detail = f' <span class="muted">({detail})</span>'
    element_id = f"{dom.WINDOW_PREFIX}{after[0]}-{after[1]}" if after else f"{dom.WINDOW_PREFIX}0"
    return (
        f'<li class="window" id="{element_id}" data-testid="window" '
        f'data-at="{after[0] if after else 0}" '
        f'data-after="{format_cursor(after) if after else ""}" '
        f'data-before="{format_cursor(before) if before else ""}" '
        f'data-url="{escape(url)}">'
        f'<button type="button" class="window-load">Show {count:,} more {noun}, '
        f"from {since} to {until}</button>{detail}</li>"
    )


OUTLINE_COMMITS_OPEN = 40  # up to this many commits are listed open; more, in groups
# Up to this many, a group's commits are in the page; more (a progress update a second
# makes 86,400 a day), each group loads its own when opened.
OUTLINE_COMMITS_INLINE = 2000


OUTLINE_ENTRIES = 200  # status changes the page lists; the rest load on demand


def outline_html(o: Outline, shown: int) -> str:
    """A long history's outline: its span, each lane's count, and every commit: each
    status change, with the commits that kept the status folded under it (a progress
    update a second makes 86,400 a day). Past ``OUTLINE_ENTRIES`` status changes (a retry
    loop makes thousands), the rest of the list loads when asked for."""
    from django.urls import reverse

    lanes = "".join(
        f'<li class="lane-{name}" data-lane="{name}"><strong>{o.lanes.get(name, 0):,}</strong> '
        f"{LANE_NOUNS[name]}</li>"
        for name, _ in LANES
    )
    first, last = from_us(o.first_us), from_us(o.last_us)
    seconds = (o.last_us - o.first_us) / 1e6
    url = reverse("dashboard:outline-commits", args=[o.task_key])
    items = commit_items(o.commits, url, limit=OUTLINE_ENTRIES)
    whole = ""
    if o.count <= WHOLE_MAX:
        page = reverse("dashboard:task", args=[o.task_key])
        whole = (
            f' <a href="{escape(page)}?whole=1" data-testid="whole-history">Every event in one '
            "page</a> (slower: for a search with the browser's find)."
        )
    return (
        '<section class="outline" data-testid="outline" aria-labelledby="outline-title">'
        '<div class="section-head"><h2 id="outline-title">Outline</h2>'
        f'<span class="muted">{o.count:,} events from {clock(first)} to {clock(last)} '
        f"({duration(seconds)}). The timeline shows {shown:,} of them, the first and the "
        "last; the rest load as you scroll to them, or when a link here, in the findings or "
        f"in the picture points into them.{whole}</span></div>"
        f'<ul class="lane-counts" data-testid="lane-counts">{lanes}</ul>'
        f'<h3>Commits <span class="muted">({len(o.commits):,})</span></h3>'
        f'<ol class="outline-commits" data-testid="outline-commits">{items}</ol>'
        "</section>"
    )


def commit_items(commits: Sequence[Mark], url: str, *, limit: int | None = None) -> str:
    """Commits as the outline lists them: each status change, then a group of the
    commits that kept that status (in the page up to ``OUTLINE_COMMITS_INLINE`` commits
    in all, else loaded from ``url`` when opened). Past ``limit`` status changes, an item
    that loads the rest from ``url``."""
    groups: list[list[Mark]] = []
    for m in commits:
        if m.changes_status or not groups:
            groups.append([m])
        else:
            groups[-1].append(m)
    inline = len(commits) <= OUTLINE_COMMITS_INLINE
    items = []
    for n, group in enumerate(groups):
        if limit is not None and n == limit:
            ends = {"after": groups[n - 1][-1].cursor, "until": commits[-1].cursor}
            query = urlencode({**{k: format_cursor(v) for k, v in ends.items()}, "grouped": 1})
            rest = len(commits) - sum(len(g) for g in groups[:n])
            items.append(
                f'<li class="commit-more" data-testid="commit-more" '
                f'data-url="{escape(url)}?{escape(query)}"><button type="button">'
                f"Show the other {len(groups) - n:,} status changes ({rest:,} commits)"
                "</button></li>"
            )
            break
        head, rest_of = group[0], group[1:]
        items.append(commit_item(head))
        if not rest_of:
            continue
        noun = "commit" if len(rest_of) == 1 else "commits"
        summary = f"{len(rest_of):,} more {noun} that kept {escape(head.status or '—')}"
        if len(commits) <= OUTLINE_COMMITS_OPEN:
            items.extend(commit_item(r) for r in rest_of)
        elif inline:
            fold = "".join(commit_item(r) for r in rest_of)
            items.append(
                f'<li class="commit-group"><details><summary>{summary}</summary>'
                f"<ol>{fold}</ol></details></li>"
            )
        else:
            ends = {"after": head.cursor, "until": rest_of[-1].cursor}
            query = urlencode({k: format_cursor(v) for k, v in ends.items()})
            items.append(
                f'<li class="commit-group"><details data-testid="commit-group" '
                f'data-url="{escape(url)}?{escape(query)}"><summary>{summary}'
                "</summary><ol></ol></details></li>"
            )
    return "".join(items)


def commit_item(m: Mark) -> str:
    """One commit of the outline: its time (a link to its row), its change, its txn."""
    names = [str(c) for c in m.changed]
    change = commit_change(m.kind, m.status, m.a, m.b, [", ".join(names)[:120]] if names else [])
    at = EPOCH + timedelta(microseconds=m.at_us)
    return f'<li><a href="#{EV}{m.id}">{clock(at)}</a> {escape(change)} · txn {m.txid}</li>'


# The units a duration is said in, smallest first: its length in seconds, and its name.
DURATION_UNITS = ((1, "s"), (60, "min"), (3600, "h"), (86_400, "d"))


def duration(seconds: float, *, whole: bool = False) -> str:
    """A duration in words, in the largest unit of which it holds two, to a tenth (a span:
    "90.0 s", "15 min", "1.5 h", "3.0 days"); ``whole``, in the largest unit of which it
    holds one, in whole units (an age: "59 s", "1 min", "23 h", "3 d")."""
    seconds = max(seconds, 0.0)
    fill = 1 if whole else 2
    size, name = next((u for u in reversed(DURATION_UNITS) if seconds >= fill * u[0]), (1, "s"))
    if whole:
        return f"{seconds // size if size > 1 else seconds:.0f} {name}"
    if name == "min":
        return f"{seconds / size:.0f} min"
    return f"{seconds / size:.1f} {'days' if name == 'd' else name}"
