"""Home (``home.html``): recent tasks, live, filterable by finding; the scenario panel."""

from __future__ import annotations

import uuid

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from lifecycle import findings, store
from lifecycle.checker import KINDS
from lifecycle.scenarios import all_scenarios


def page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    page = page_number(request)
    wanted = request.GET.get("findings", "")
    if wanted and wanted != "any" and wanted not in KINDS:
        wanted = ""
    if wanted:
        tasks, has_next = findings.tasks_with_findings(None if wanted == "any" else wanted, page)
    else:
        tasks, has_next = store.recent_tasks(page)
    findings.with_findings(tasks)
    return render(
        request,
        "dashboard/home.html",
        {
            "tasks": tasks,
            "page": page,
            "has_next": has_next,
            "wanted": wanted,
            "first_pass": bool(wanted) and not findings.first_pass_done(),
            "kinds": KINDS,
            "scenarios": all_scenarios(),
            "token": uuid.uuid4().hex,
        },
    )
