"""The home page's search: tasks by status, scenario, verdict, finding kind, time range and
key prefix, in any combination, each filter with its counts.

It reads ``lifecycle_task_check`` only, a row per task that the maintainer keeps
(``lifecycle.check.maintainer``), never the event table: a search over a million events is a
query over one row per task. A task the maintainer has not reached yet is not found; the
home page says while its first pass is under way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, F, Q, QuerySet

from lifecycle.check.rules import KINDS
from lifecycle.events import unstorable
from lifecycle.models import TaskCheck
from lifecycle.store import eventlog

ANY = "any"  # the finding filter's "with any finding"
NO_RUN = "none"  # the verdict filter's "no scenario run"
RUNNING = "running"  # a scenario run with no verdict yet
VERDICTS = ("pass", "fail", RUNNING, NO_RUN)
FACET_LIMIT = 50  # values listed per filter, the most frequent first
MAX_TEXT = 200


class SearchError(ValueError):
    """A filter's value that cannot be searched for; the text says which and why."""


@dataclass(frozen=True)
class Filters:
    status: str = ""
    scenario: str = ""
    verdict: str = ""
    findings: str = ""  # a kind, or "any"
    since: datetime | None = None
    until: datetime | None = None
    prefix: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> tuple[Filters, list[str]]:
        """The filters of a query string, and what was wrong with it (those left out)."""
        errors: list[str] = []
        values: dict[str, Any] = {}
        for name in ("status", "scenario", "prefix"):
            text = (query.get(name) or "").strip()
            if len(text) > MAX_TEXT:
                errors.append(f"{name} is longer than {MAX_TEXT} characters")
            elif problem := unstorable(text):  # no stored task holds one
                errors.append(f"{name} holds {problem}")
            elif text:
                values[name] = text
        verdict = (query.get("verdict") or "").strip()
        if verdict and verdict not in VERDICTS:
            errors.append(f"verdict must be one of {', '.join(VERDICTS)}")
        elif verdict:
            values["verdict"] = verdict
        kind = (query.get("findings") or "").strip()
        if kind and kind != ANY and kind not in KINDS:
            errors.append(f"findings must be {ANY} or one of the checker's kinds")
        elif kind:
            values["findings"] = kind
        for name in ("since", "until"):
            text = (query.get(name) or "").strip()
            if not text:
                continue
            try:
                at = datetime.fromisoformat(text)
            except ValueError:
                errors.append(f"{name} {text[:40]!r} is not a date or time (2026-12-02T09:00)")
                continue
            values[name] = at if at.tzinfo else at.replace(tzinfo=UTC)  # the page's times are UTC
        found = cls(**values)
        if found.since and found.until and found.since > found.until:
            errors.append("since is after until")
            found = replace(found, since=None, until=None)
        return found, errors

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def query(self) -> dict[str, str]:
        """The filters as a query string's values (for links that keep them)."""
        found = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                found[f.name] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
            elif value:
                found[f.name] = value
        return found


def _matching(filters: Filters, *, leave_out: str = "") -> QuerySet[TaskCheck]:
    rows = TaskCheck.objects.all()
    if filters.status and leave_out != "status":
        rows = rows.filter(status=filters.status)
    if filters.scenario and leave_out != "scenario":
        rows = rows.filter(scenario=filters.scenario)
    if filters.verdict and leave_out != "verdict":
        if filters.verdict == NO_RUN:
            rows = rows.filter(scenario__isnull=True)
        elif filters.verdict == RUNNING:
            rows = rows.filter(scenario__isnull=False, verdict__isnull=True)
        else:
            rows = rows.filter(verdict=filters.verdict)
    if filters.findings and leave_out != "findings":
        rows = (
            rows.exclude(kinds=[])
            if filters.findings == ANY
            else rows.filter(kinds__contains=[filters.findings])
        )
    if filters.since:
        rows = rows.filter(last_at__gte=filters.since)
    if filters.until:
        rows = rows.filter(first_at__lte=filters.until)
    if filters.prefix:
        rows = rows.filter(task_key__startswith=filters.prefix)
    return rows


def search(
    filters: Filters, page: int = 1, per_page: int = eventlog.PAGE_SIZE
) -> tuple[list[eventlog.TaskSummary], bool, int]:
    """The tasks that match, newest activity first: one page, whether more follow, and how
    many match in all."""
    rows = _matching(filters)
    total = rows.count()
    offset = (page - 1) * per_page
    keys = list(
        rows.order_by("-last_event_id").values_list("task_key", flat=True)[
            offset : offset + per_page + 1
        ]
    )
    return eventlog.summaries_of(keys[:per_page]), len(keys) > per_page, total


@dataclass(frozen=True)
class Facet:
    name: str
    values: list[tuple[str, int]]  # value, tasks; the most frequent first


def facets(filters: Filters) -> list[Facet]:
    """Each filter's values with how many tasks match them, the other filters applied."""
    found = []
    for name in ("status", "scenario"):
        counted = (
            _matching(filters, leave_out=name)
            .exclude(**{f"{name}__isnull": True})
            .values(value=F(name))
            .annotate(n=Count("pk"))
            .order_by("-n", "value")[:FACET_LIMIT]
        )
        found.append(Facet(name, [(row["value"], row["n"]) for row in counted]))
    verdicts: dict[str, int] = {}
    counted = (
        _matching(filters, leave_out="verdict")
        .annotate(has_run=Q(scenario__isnull=False))
        .values("verdict", "has_run")
        .annotate(n=Count("pk"))
    )
    for row in counted:
        value = row["verdict"] or (RUNNING if row["has_run"] else NO_RUN)
        verdicts[value] = verdicts.get(value, 0) + row["n"]
    found.append(Facet("verdict", sorted(verdicts.items(), key=lambda kv: -kv[1])))
    rows = _matching(filters, leave_out="findings")
    kinds = [(ANY, rows.exclude(kinds=[]).count())]
    kinds += [(kind, rows.filter(kinds__contains=[kind]).count()) for kind in KINDS]
    found.append(Facet("findings", [(k, n) for k, n in kinds if n or k == ANY]))
    return found
