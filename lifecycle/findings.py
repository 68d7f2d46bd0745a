"""Findings as the pages show them: each mention of a transaction or a time links its event."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from django.utils.safestring import SafeString, mark_safe

from lifecycle.checker import Finding
from lifecycle.events import EventRecord, clock
from lifecycle.timeline import EventView

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
        return f'<a href="#event-{event_id}">{text}</a>' if event_id is not None else text

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


def pin(views: Sequence[EventView], findings: Sequence[Finding]) -> set[int]:
    """Mark each event view with the kinds of findings it proves; return the ids changed."""
    kinds: dict[int, list[str]] = {}
    for f in findings:
        for event_id in f.events:
            if f.kind not in kinds.setdefault(event_id, []):
                kinds[event_id].append(f.kind)
    changed = set()
    for view in views:
        new = kinds.get(view.id, [])
        if new != view.findings:
            view.findings = new
            changed.add(view.id)
    return changed
