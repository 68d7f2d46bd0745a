"""Compare (``compare.html``): two runs of one scenario side by side, aligned on the task's
lifecycle.

Rendered fully on the server, like every page, so the URL is a bug report that reads with
JavaScript off: "the passing run against the failing one".
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from lifecycle.history import in_time_order
from lifecycle.models import Run
from lifecycle.store import eventlog
from lifecycle.timeline.compare import (
    ROW_STATES,
    Row,
    Step,
    align,
    divergence_sentence,
    lifecycle_steps,
)

CANDIDATES = 10
OPPOSITE = {Run.Verdict.PASS: Run.Verdict.FAIL, Run.Verdict.FAIL: Run.Verdict.PASS}
LATEST_LABEL = {Run.Verdict.PASS: "latest passing run", Run.Verdict.FAIL: "latest failing run"}


def run_steps(run: Run) -> list[Step]:
    if not run.task_key:
        return []
    return lifecycle_steps(in_time_order(eventlog.task_events(run.task_key)))


@dataclass
class RowView:
    """A row and, for each side, its step and the run whose page the step links to."""

    row: Row
    cells: list[tuple[Step | None, Run]]


@require_GET
def compare_runs(request: HttpRequest, run_id: int, other_id: int) -> HttpResponse:
    run = get_object_or_404(Run, pk=run_id)
    other = get_object_or_404(Run, pk=other_id)
    context: dict[str, object] = {"run": run, "other": other}
    if run.scenario != other.scenario:
        context["error"] = (
            f"Run {run.id} is a run of {run.scenario} and run {other.id} a run of "
            f"{other.scenario}: only two runs of the same scenario can be compared."
        )
        return render(request, "dashboard/compare.html", context, status=400)
    comparison = align(run_steps(run), run_steps(other))
    return render(
        request,
        "dashboard/compare.html",
        {
            **context,
            "comparison": comparison,
            "sides": [(run, "This run"), (other, "Other run")],
            "rows": [
                RowView(row, [(row.left, run), (row.right, other)]) for row in comparison.rows
            ],
            "sentence": divergence_sentence(comparison, run.id, other.id),
            "counts": {state: comparison.count(state) for state in ROW_STATES},
            "running": [r for r in (run, other) if r.state != Run.State.DONE],
        },
    )


@dataclass
class Candidate:
    run: Run
    label: str = ""  # "latest passing run" for the most recent run with the other verdict


def compare_candidates(run: Run, limit: int = CANDIDATES) -> list[Candidate]:
    """Finished runs of the same scenario to compare with, newest first.

    The most recent run with the opposite verdict comes first, whatever its age: the
    passing run beside the failing one is the comparison that finds a race.
    """
    others = Run.objects.filter(scenario=run.scenario, state=Run.State.DONE).exclude(pk=run.pk)
    others = others.exclude(task_key=None).order_by("-id")
    opposite = OPPOSITE.get(Run.Verdict(run.verdict)) if run.verdict else None
    first = others.filter(verdict=opposite).first() if opposite else None
    candidates = [Candidate(first, LATEST_LABEL[opposite])] if first and opposite else []
    rest = others.exclude(pk=first.pk) if first else others
    candidates += [Candidate(r) for r in rest[: limit - len(candidates)]]
    return candidates
