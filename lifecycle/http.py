"""HTTP facts that the dashboard and the lab share: the one JSON error shape of every API
here, ``{"error": "<what went wrong, for a person>"}``, and a request's own server."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def json_error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def base_url(request: HttpRequest) -> str:
    """The server that received the request, as the probe reaches it: the lab API there."""
    return request.build_absolute_uri("/").rstrip("/")
