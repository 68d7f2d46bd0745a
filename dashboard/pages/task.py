"""Task (``task.html``): the timeline of any task, lab, attached or imported; and the import
of an exported timeline file (``import``)."""

from __future__ import annotations

import json

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import access_of, needs
from dashboard.pages.timeline import timeline_context
from lifecycle import imports, store
from lifecycle.models import ImportedTask, Run


@require_GET
def task_page(request: HttpRequest, task_key: str) -> HttpResponse:
    context = timeline_context(task_key, store.expected_for(task_key))
    runs = list(Run.objects.filter(task_key=task_key).order_by("id"))
    if not context["events"] and not runs:
        raise Http404(f"no event for task {task_key}")
    imported = ImportedTask.objects.filter(task_key=task_key).first()
    if imported is not None:
        context["live"] = False  # a copy: nothing more comes
    return render(request, "dashboard/task.html", {**context, "runs": runs, "imported": imported})


@require_POST
@needs("run")
def import_page(request: HttpRequest) -> HttpResponse:
    """The home page's import form: an exported timeline file becomes a read-only task."""
    upload = request.FILES.get("file")
    if upload is None:
        reasons = ["choose a timeline file (the JSON a task page's “timeline as JSON” gives)"]
    elif upload.size is not None and upload.size > imports.MAX_IMPORT_BYTES:
        limit = imports.MAX_IMPORT_BYTES
        reasons = [f"the file has {upload.size} bytes; an import takes at most {limit}"]
    else:
        try:
            document = json.loads(upload.read())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            reasons = [f"the file is not JSON: {type(exc).__name__}: {exc}"[:300]]
        else:
            try:
                done = imports.import_timeline(document, imported_by=access_of(request).who)
            except imports.ImportError_ as exc:
                reasons = exc.reasons
            else:
                return redirect("dashboard:task", done.task_key)
    return render(request, "dashboard/import_failed.html", {"reasons": reasons}, status=400)
