"""Running the checker over stored histories, and keeping its findings per task."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection

from lifecycle import queries
from lifecycle.checker import Finding, check
from lifecycle.events import EventRecord
from lifecycle.models import Run, TaskCheck


def expected_for(task_key: str) -> str | None:
    """What the task's latest scenario run expects (None: not a scenario's task)."""
    return (
        Run.objects.filter(task_key=task_key).order_by("-id").values_list("expected", flat=True)
    ).first()


def findings_for(records: Sequence[EventRecord], expected: str | None) -> list[Finding]:
    return check(records, expected)


def _stats(task_keys: Iterable[str] | None) -> dict[str, tuple[int, int]]:
    """Event count and newest id per task (all tasks when ``task_keys`` is None)."""
    with connection.cursor() as cursor:
        if task_keys is None:
            cursor.execute(
                "SELECT task_key, count(*), max(id) FROM lifecycle_event GROUP BY task_key"
            )
        else:
            cursor.execute(
                "SELECT task_key, count(*), max(id) FROM lifecycle_event "
                "WHERE task_key = ANY(%s) GROUP BY task_key",
                [list(task_keys)],
            )
        return {key: (count, last) for key, count, last in cursor.fetchall()}


def refresh(task_keys: Iterable[str] | None = None) -> dict[str, TaskCheck]:
    """Bring the stored findings of these tasks (or of all) up to date; return them."""
    stats = _stats(task_keys)
    stored = {c.task_key: c for c in TaskCheck.objects.filter(task_key__in=list(stats))}
    for key, (count, last) in stats.items():
        check_row = stored.get(key)
        expected = expected_for(key)
        if (
            check_row is not None
            and check_row.event_count == count
            and check_row.last_event_id == last
            and check_row.expected == expected
        ):
            continue
        findings = findings_for(queries.task_events(key), expected)
        check_row, _ = TaskCheck.objects.update_or_create(
            task_key=key,
            defaults={
                "event_count": count,
                "last_event_id": last,
                "expected": expected,
                "kinds": sorted({f.kind for f in findings}),
                "findings": [f.as_json() for f in findings],
            },
        )
        stored[key] = check_row
    return stored


def findings_json(task_key: str) -> list[dict]:
    found = refresh([task_key]).get(task_key)
    return found.findings if found else []
