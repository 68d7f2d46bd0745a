"""Import an exported timeline (``GET /api/tasks/<key>/timeline``) as a read-only task, so
a bug report travels as one file.

The file is checked whole before anything is stored: every event is validated as the
ingestor validates messages (any source, ``db`` included), and one bad event refuses the
file with the reasons, so nothing half-imported is left. The copy gets a key of its own,
``imported/<8 hex>/<original key>``, and new uuids (derived from the import and the
original's, so the same file imported twice makes two copies, never a clash with the
original events); it keeps every time, status, transaction id and body, and its arrival
order (the original ids), so the checker finds what it found in the original. The
expectation the export was judged against becomes a ``probe.expect`` event. An
``ImportedTask`` row marks the copy: nothing may add events to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from lifecycle import events
from lifecycle.events import KINDS, MAX_TASK_KEY, MalformedEvent
from lifecycle.models import ImportedTask
from lifecycle.store import eventlog

MAX_IMPORT_EVENTS = 200_000
MAX_IMPORT_BYTES = 64 * 1024 * 1024  # an exported timeline of about 100,000 events
MAX_ERRORS = 20  # reasons listed when a file is refused
ALL_SOURCES = frozenset(KINDS)
NAMESPACE = uuid.UUID("6f1d2c8e-7a53-4f0e-9b35-4d1d6c0b9a11")


class ImportRefused(ValueError):
    """A file that cannot be imported; ``reasons`` says why, per event where it can."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Imported:
    task_key: str
    original_key: str
    events: int


def import_timeline(document: Any, imported_by: str = "") -> Imported:
    """Store an exported timeline as a new read-only task; raise ImportRefused if it is not
    one (with every reason, up to MAX_ERRORS), storing nothing."""
    if not isinstance(document, dict):
        raise ImportRefused(["the file is not a timeline: a JSON object was expected"])
    original = document.get("task")
    items = document.get("events")
    if not isinstance(original, str) or not original or len(original) > MAX_TASK_KEY:
        raise ImportRefused([f"its 'task' must be a task key of 1 to {MAX_TASK_KEY} characters"])
    if not isinstance(items, list) or not items:
        raise ImportRefused(["its 'events' must be a non-empty list"])
    if len(items) > MAX_IMPORT_EVENTS:
        raise ImportRefused([f"{len(items)} events: an import takes at most {MAX_IMPORT_EVENTS}"])
    import_id = uuid.uuid4()
    key = f"imported/{import_id.hex[:8]}/{original}"[:MAX_TASK_KEY]
    parsed: list[tuple[int, events.IncomingEvent]] = []
    reasons: list[str] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise MalformedEvent("not a JSON object")
            original_id = item.get("uuid") or item.get("id")
            message = {
                "schema": events.SCHEMA_VERSION,
                "uuid": str(uuid.uuid5(NAMESPACE, f"{import_id}:{original_id}:{index}")),
                "task": key,
                "source": item.get("source"),
                "kind": item.get("kind"),
                "status": item.get("status"),
                "at": item.get("at"),
                "txid": item.get("txid"),
                "body": item.get("body", {}),
            }
            events.check_size(events.encode(message))
            given = item.get("id")
            order = given if isinstance(given, int) else index
            parsed.append((order, events.validate(message, sources=ALL_SOURCES)))
        except MalformedEvent as exc:
            reasons.append(f"event {index}: {exc}")
        except Exception as exc:  # e.g. RecursionError on a deeply nested body
            reasons.append(f"event {index}: cannot parse: {type(exc).__name__}")
        if len(reasons) >= MAX_ERRORS:
            reasons.append("(and maybe more)")
            break
    expected = document.get("expected")
    if expected is not None and (not isinstance(expected, str) or len(expected) > 64):
        reasons.append("its 'expected' must be null or a status of at most 64 characters")
    if reasons:
        raise ImportRefused(reasons)
    # The original's arrival order: the checker reads it (a commit's event before a read).
    records = [event for _, event in sorted(parsed, key=lambda pair: pair[0])]
    if expected:
        message = events.make_message(
            source="probe",
            kind="expect",
            task=key,
            status=expected,
            at=max(r.at for r in records),
            body={"client": "import", "test": f"imported from {original}"[:200]},
        )
        try:
            records.append(events.validate(message))
        except MalformedEvent as exc:  # e.g. a NUL in it
            raise ImportRefused([f"its 'expected' cannot be stored: {exc}"]) from None
    url = document.get("url")
    if not isinstance(url, str) or events.unstorable(url):
        url = ""  # the original's page, for the record only
    with transaction.atomic():
        stored, refused = eventlog.append(records)
        if refused:
            raise ImportRefused([f"event {i}: {reason}" for i, reason in refused[:MAX_ERRORS]])
        ImportedTask.objects.create(
            task_key=key,
            original_key=original,
            source_url=url[:2000],
            imported_by=imported_by[:200],
            event_count=stored,
        )
    return Imported(key, original, stored)


def imported_among(task_keys: list[str]) -> set[str]:
    """Which of these tasks are imported copies (read-only)."""
    return set(
        ImportedTask.objects.filter(task_key__in=task_keys).values_list("task_key", flat=True)
    )
