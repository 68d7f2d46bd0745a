"""Scenario (``scenario.html``): what it does, its runs and how often it failed."""

from __future__ import annotations

import json
import uuid

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from dashboard import plots
from lifecycle.models import Event, Run
from lifecycle.scenarios.catalogue import UnknownScenario, get_scenario

RUNS_SHOWN = 200
PLOTTED_RUNS = 100  # the verdicts plotted, and the runs whose reads the histogram counts


@require_GET
def scenario_page(request: HttpRequest, name: str) -> HttpResponse:
    try:
        scenario = get_scenario(name)
    except UnknownScenario as exc:
        raise Http404(str(exc)) from None
    runs = list(Run.objects.filter(scenario=name).order_by("-id")[:RUNS_SHOWN])
    total = Run.objects.filter(scenario=name, state=Run.State.DONE).count()
    failed = Run.objects.filter(scenario=name, verdict=Run.Verdict.FAIL).count()
    recent = list(reversed(runs[:PLOTTED_RUNS]))
    keys = [r.task_key for r in recent if r.task_key]
    latencies = [
        float(v)
        for v in Event.objects.filter(
            task_key__in=keys, source=Event.Source.PROBE, kind="read"
        ).values_list("body__latency_ms", flat=True)[:50_000]
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    return render(
        request,
        "dashboard/scenario.html",
        {
            "scenario": scenario,
            "runs": runs,
            "total": total,
            "failed": failed,
            "failure_rate": 100 * failed / total if total else 0,
            "verdict_plot": mark_safe(plots.verdicts(recent)),
            "latency_plot": mark_safe(plots.latency_histogram(latencies)),
            "reads_plotted": len(latencies),
            "body_text": json.dumps(scenario.body, indent=2, ensure_ascii=False),
            "token": uuid.uuid4().hex,
        },
    )
