"""Findings per task: the checker run over stored histories, memoised, and kept in
``lifecycle_task_check`` so the home page can filter tasks by them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from lifecycle import store
from lifecycle.checker import Finding, check
from lifecycle.events import EventRecord
from lifecycle.models import CheckCursor, Event, TaskCheck

# The checker's last answers, by the exact set of events it was given: a history is
# append-only and an event never changes, so the same ids and expectation give the same
# findings. Several connections to one task, and a page rendered again, check once.
_MEMO: OrderedDict[tuple[object, ...], tuple[frozenset[int], list[Finding]]] = OrderedDict()
MEMO_SIZE = 32
_memo_lock = threading.Lock()


def findings_for(records: Sequence[EventRecord], expected: str | None) -> list[Finding]:
    if not records:
        return check(records, expected)
    ids = frozenset(r.id for r in records)
    key = (records[0].task_key, expected, len(ids), max(ids), sum(ids))
    with _memo_lock:
        hit = _MEMO.get(key)
        if hit is not None and hit[0] == ids and len(ids) == len(records):
            _MEMO.move_to_end(key)
            return list(hit[1])
    findings = check(records, expected)
    with _memo_lock:
        _MEMO[key] = (ids, findings)
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)
    return list(findings)


def stored_findings(
    task_key: str, records: Sequence[EventRecord], expected: str | None
) -> list[Finding]:
    """``findings_for`` a task's whole history, reusing (and keeping) its ``TaskCheck``.

    The stored check is used when it covers exactly as many events up to the same newest
    id with the same expectation, the rule ``refresh`` keeps it by; the home page brings it
    up to date for the tasks it lists, so their pages need not run the checker again.
    """
    if len(records) < STORE_MIN:
        return findings_for(records, expected)
    last = max(r.id for r in records)
    row = (
        TaskCheck.objects.filter(
            task_key=task_key, event_count=len(records), last_event_id=last, expected=expected
        )
        .values_list("findings", flat=True)
        .first()
    )
    if row is not None:
        return [Finding.from_json(f) for f in row]
    findings = findings_for(records, expected)
    _keep(task_key, len(records), last, expected, findings)
    return findings


def _keep(
    task_key: str, count: int, last: int, expected: str | None, findings: list[Finding]
) -> TaskCheck:
    row, _ = TaskCheck.objects.update_or_create(
        task_key=task_key,
        defaults={
            "event_count": count,
            "last_event_id": last,
            "expected": expected,
            "kinds": sorted({f.kind for f in findings}),
            "findings": [f.as_json() for f in findings],
        },
    )
    return row


STORE_MIN = 1000  # shorter histories check faster than the row is read


# Ids that commit out of order may land this far below the newest id already passed.
REFRESH_MARGIN = 10_000


def refresh_changed() -> None:
    """Check every task whose events moved since the last pass (all of them the first time).

    The pass's position is kept in lifecycle_check_cursor; a pass reads only the newer part
    of the event table (by primary key), not all of it.
    """
    cursor_row, _ = CheckCursor.objects.get_or_create(pk=1)
    newest = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
    if cursor_row.checked_through == 0:
        refresh()
    else:
        since = max(0, cursor_row.checked_through - REFRESH_MARGIN)
        keys = set(Event.objects.filter(id__gt=since).values_list("task_key", flat=True).distinct())
        if keys:
            refresh(keys)
    CheckCursor.objects.filter(pk=1).update(checked_through=newest)


def refresh(task_keys: Iterable[str] | None = None) -> dict[str, TaskCheck]:
    """Bring the stored findings of these tasks (or of all) up to date; return them."""
    stats = store.task_stats(None if task_keys is None else list(task_keys))
    stored = {c.task_key: c for c in TaskCheck.objects.filter(task_key__in=list(stats))}
    expectations = store.expected_by_task(list(stats))
    for key, (count, last) in stats.items():
        check_row = stored.get(key)
        expected = expectations.get(key)
        if (
            check_row is not None
            and check_row.event_count == count
            and check_row.last_event_id == last
            and check_row.expected == expected
        ):
            continue
        findings = findings_for(store.task_events(key), expected)
        stored[key] = _keep(key, count, last, expected, findings)
    return stored


def findings_json(task_key: str) -> list[dict]:
    found = refresh([task_key]).get(task_key)
    return found.findings if found else []


def tasks_with_findings(
    kind: str | None, page: int = 1, per_page: int = store.PAGE_SIZE
) -> tuple[list[store.TaskSummary], bool]:
    """Tasks whose history has a finding (of ``kind``, if given), newest activity first."""
    refresh_changed()  # every task whose history moved since the last pass
    matching = TaskCheck.objects.exclude(kinds=[])
    if kind:
        matching = matching.filter(kinds__contains=[kind])
    offset = (page - 1) * per_page
    keys = list(
        matching.order_by("-last_event_id").values_list("task_key", flat=True)[
            offset : offset + per_page + 1
        ]
    )
    return store.summaries_of(keys[:per_page]), len(keys) > per_page


def with_findings(summaries: list[store.TaskSummary]) -> list[store.TaskSummary]:
    """Set each summary's finding kinds, bringing the stored checks up to date."""
    checked = refresh([s.task_key for s in summaries])
    for summary in summaries:
        found = checked.get(summary.task_key)
        summary.findings = list(found.kinds) if found else []
    return summaries
