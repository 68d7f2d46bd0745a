"""The one place that renders a timeline event to HTML, for the page and the live push.

Plain Python rather than a Django template: a task page may hold thousands of events, and
the template engine spends about 0.6 ms on each (3 s for 5,000 here), this about 0.01 ms.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from lifecycle.events import EventRecord, clock
from lifecycle.templatetags.lifecycle_tags import status_chip
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
            f'<a class="version-link" href="#event-{version_of}" data-testid="version-link">'
            f"↖ version of txn {ev.version_txid}</a>"
        )
    else:
        version = ""
    lane = ev.lane
    if ev.findings:
        classes = f"ev lane-{lane} has-finding"
        findings = "".join(
            f'<a class="badge finding" href="#findings" title="this event proves a finding">'
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
        f'<li class="{classes}" id="event-{event_id}" data-testid="event" '
        f'data-event-id="{event_id}" data-at="{at_us}" data-source="{r.source}" '
        f'data-kind="{kind}"{attrs} style="--lane: {LANE_INDEX[lane]}">'
        f'<a class="ev-time" href="#event-{event_id}">{time_text}'
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
