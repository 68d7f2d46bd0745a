"""Scenario (``scenario.html``): what it does, its runs and how often it failed."""

from __future__ import annotations

import json
import uuid

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from lifecycle.models import Run
from lifecycle.scenarios import UnknownScenario, get_scenario

RUNS_SHOWN = 200


@require_GET
def scenario_page(request: HttpRequest, name: str) -> HttpResponse:
    try:
        scenario = get_scenario(name)
    except UnknownScenario as exc:
        raise Http404(str(exc)) from None
    runs = list(Run.objects.filter(scenario=name).order_by("-id")[:RUNS_SHOWN])
    total = Run.objects.filter(scenario=name, state=Run.State.DONE).count()
    failed = Run.objects.filter(scenario=name, verdict=Run.Verdict.FAIL).count()
    return render(
        request,
        "dashboard/scenario.html",
        {
            "scenario": scenario,
            "runs": runs,
            "total": total,
            "failed": failed,
            "failure_rate": 100 * failed / total if total else 0,
            "body_text": json.dumps(scenario.body, indent=2, ensure_ascii=False),
            "token": uuid.uuid4().hex,
        },
    )
