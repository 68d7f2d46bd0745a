"""Dashboard pages (the dashboard issue fills these in)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from lifecycle.models import Run


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Task lifecycle inspector", content_type="text/plain")


def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(Run, pk=run_id)
    return HttpResponse(str(run), content_type="text/plain")
