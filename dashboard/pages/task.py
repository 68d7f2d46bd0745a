"""Task (``task.html``): the timeline of any task, lab or attached."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.pages.timeline import timeline_context
from lifecycle import store
from lifecycle.models import Run


@require_GET
def task_page(request: HttpRequest, task_key: str) -> HttpResponse:
    context = timeline_context(task_key, store.expected_for(task_key))
    runs = list(Run.objects.filter(task_key=task_key).order_by("id"))
    if not context["events"] and not runs:
        raise Http404(f"no event for task {task_key}")
    return render(request, "dashboard/task.html", {**context, "runs": runs})
