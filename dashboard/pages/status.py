"""Status (``status.html``): the deployment's nodes, who holds follow and maintain, the
ingest queue and the lags; for maintainers, as ``GET /api/status`` (lifecycle.nodes.status)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.access import needs
from lifecycle.nodes.status import deployment_status
from lifecycle.runtime.database import off_thread


@require_GET
@needs("manage")
async def status_page(request: HttpRequest) -> HttpResponse:
    # off the request's thread: each source may take its timeout to answer
    response: HttpResponse = await off_thread(_render)(request)
    response["Cache-Control"] = "no-store"
    return response


def _render(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/status.html", {"status": deployment_status()})
