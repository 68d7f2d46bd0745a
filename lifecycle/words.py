"""What the timeline says of events, in words: a row's summary, a commit's change, a gap's
sentence. Pure, and imports nothing of ours but the event record: the history's facts
come in as values, so a row is worded after they are gathered."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from lifecycle.events import GAP, EventRecord, clock, gap_span


def summary(
    r: EventRecord,
    *,
    xmin: int | None = None,
    standby: bool = False,
    replayed_at: datetime | None = None,
) -> str:
    """What an event's row says of it; of an API read, what the history knows of it: the
    version it names (``xmin``), whether a hot standby served it and how far that
    standby's replay had come (``lifecycle.history.Facts``)."""
    b = r.body
    if r.source == "db":
        writer = b.get("application_name") or "unknown writer"
        change = commit_change(
            r.kind, r.status, b.get("old_status"), b.get("new_status"), b.get("changed")
        )
        return f"{change} · txn {r.txid} · {writer}"
    if r.kind == GAP:
        return gap_sentence(r)
    if r.source == "api":
        replica = ""
        if standby:  # with how far its replay had come, the primary's commit time
            replica = (
                f" from a replica, replayed to {clock(replayed_at)}"
                if replayed_at
                else " from a replica"
            )
        return (
            f"returned {r.status}"
            + (" (no version)" if xmin is None else "")
            + (" from its cache" if b.get("cached") is True else "")
            + replica
        )
    if r.source == "probe":
        if r.kind == "verdict":
            return (
                f"verdict {str(b.get('verdict', '')).upper()}: expected "
                f"{b.get('expected')}, observed {b.get('observed')}"
            )
        if r.kind == "expect":
            test = f" ({str(b['test'])[:160]})" if b.get("test") else ""
            return f"a test expects {r.status}{test}"
        if r.kind == "submit":
            return f"submitted → HTTP {b.get('http_status')} {r.status or ''}".rstrip()
        if b.get("error"):
            return str(b["error"])[:160]
        if b.get("http_status") not in (None, 200):
            return f"HTTP {b.get('http_status')}"
        return f"saw {r.status} · {b.get('latency_ms', '?')} ms"
    if r.source == "broker":
        parts = [f"attempt {b['attempt']}" if b.get("attempt") else "", b.get("actor") or ""]
        if b.get("exception"):
            parts.append(str(b["exception"])[:120])
        return " · ".join(p for p in parts if p)
    if r.source == "log":
        message = str(b.get("message") or "")[:160]
        return f"{r.kind.upper()} {b.get('logger', '')}: {message}"
    return r.kind


def commit_change(kind: str, status: str | None, old: object, new: object, changed: object) -> str:
    """What a commit did, as its row and the outline say it."""
    if kind == "insert":
        return f"created {status}"
    if kind == "delete":
        return "deleted"
    if old != new:
        return f"{old} → {new}"
    columns = changed if isinstance(changed, list) else []
    return "changed " + ", ".join(str(c) for c in columns)


def gap_sentence(r: EventRecord) -> str:
    """What a ``gap`` event means, in the words the timeline and the task header use."""
    first, last = gap_span(r)
    who = str(r.body.get("process") or "a process")[:64]
    pid = r.body.get("pid")
    dropped = r.body.get("dropped")
    count = dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else "some"
    noun = "event" if count == 1 else "events"
    span = f"at {clock(first)}" if first == last else f"between {clock(first)} and {clock(last)}"
    return (
        f"the {who}{f' (pid {pid})' if isinstance(pid, int) else ''} dropped {count} "
        f"{r.source} {noun} {span}; this history may be incomplete"
    )


def gap_notices(records: Iterable[EventRecord]) -> list[str]:
    """One sentence per ``gap`` event of a history, oldest first (at most 5, then a count)."""
    gaps = [r for r in records if r.kind == GAP and r.source != "db"]
    notices = [gap_sentence(r) for r in gaps[:5]]
    if len(gaps) > 5:
        notices.append(f"and {len(gaps) - 5} more gaps")
    return notices
