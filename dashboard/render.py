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
from html import escape

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from dashboard import dom
from lifecycle import lifecycles
from lifecycle.checker import Finding
from lifecycle.events import EventRecord, clock
from lifecycle.timeline import LANES, EventView, field_text

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
    return _status_chip(status, lifecycles.role_of(status))


@functools.lru_cache(maxsize=256)
def _status_chip(status: str | None, role: str | None) -> str:
    label = status or "unknown"
    return format_html(
        '<span class="chip st-{}" data-status="{}" data-role="{}">'
        '<span aria-hidden="true">{}</span> {}</span>',
        role or "unknown",
        label,
        role or "unknown",
        SYMBOLS.get(role or "", "•"),
        label,
    )


VERDICT_CHIPS = {
    "pass": mark_safe('<span class="chip v-pass"><span aria-hidden="true">✓</span> pass</span>'),
    "fail": mark_safe('<span class="chip v-fail"><span aria-hidden="true">✕</span> fail</span>'),
}
RUNNING_CHIP = mark_safe(
    '<span class="chip v-running"><span aria-hidden="true">◌</span> running</span>'
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
        f'<div class="ev-card" tabindex="0"{title}>'
        f'<span class="ev-lane">{lane}</span>{chip}'
        f'<span class="ev-kind">{kind}</span>'
        f'<span class="ev-summary">{escape(ev.summary)}</span>{version}{findings}'
        "</div></li>"
    )


def events_html(views: Iterable[EventView], *, inline_fields: bool = True) -> str:
    return "".join([event_html(v, inline_fields=inline_fields) for v in views])


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
        )
        for f in findings
    ]
