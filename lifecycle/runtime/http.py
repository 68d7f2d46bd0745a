"""HTTP facts that the dashboard and the lab share: the one JSON error shape of every API
here, ``{"error": "<what went wrong, for a person>"}``, the reading of a JSON request, and
whether a browser sent it from another site."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.utils.crypto import salted_hmac

# The probe's credential for the lab's API (lifecycle.lab.access): derived from SECRET_KEY,
# so every process of one installation knows it and no one else does.
LAB_KEY_HEADER = "X-Lifecycle-Lab-Key"


def lab_key() -> str:
    return salted_hmac("lifecycle.lab.access", "the probe", algorithm="sha256").hexdigest()


def json_error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def json_request(request: HttpRequest, limit: int, *, what: str, send: str) -> Any:
    """The decoded JSON of a request of at most ``limit`` bytes, or the ``json_error`` that
    says why not: 415 without a JSON content type ("send <send> as JSON"), 413 past the
    limit, 400 for bad JSON ("<what> is not JSON")."""
    if request.content_type != "application/json":
        return json_error(415, f"send {send} as JSON, with Content-Type: application/json")
    too_big = json_error(413, f"a request holds at most {limit} bytes")
    if int(request.headers.get("Content-Length") or 0) > limit:
        return too_big
    try:
        raw = request.body
    except RequestDataTooBig:
        return too_big
    if len(raw) > limit:
        return too_big
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return json_error(400, f"{what} is not JSON: {type(exc).__name__}: {exc}"[:500])


def cross_origin(request: HttpRequest) -> bool:
    """Whether a browser sent this request from another site's page. A browser names the
    page's origin on every POST (``Origin``; ``null`` from a sandbox or a file); programs
    such as the probe, curl or an end-to-end test send none, and are not refused."""
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site")
    if origin == "null":
        return True
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" != f"{request.scheme}://{request.get_host()}"
