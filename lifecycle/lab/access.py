"""Who may use the lab's API: whoever may start a run, and the probe.

A lab task is real work in the worker (a sleeping task holds one of its threads, and the
redelivery switch kills its process), so the API is no door. A request needs one of:

- the probe's key, ``X-Lifecycle-Lab-Key``: derived from ``SECRET_KEY``, so every process
  of one installation (the web server's run threads, ``lifecycle run``) knows it, and
  sent by the probe only to ``LAB_BASE_URL``;
- a runner's token, ``Authorization: Bearer``;
- a session whose account may start runs; its ``POST`` needs its CSRF token.

Anyone else gets 401 (no credential, or a wrong one) or 403 (a role that may not run).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.crypto import constant_time_compare

from lifecycle.people import roles, tokens
from lifecycle.runtime.http import LAB_KEY_HEADER, json_error, lab_key

WHO_MAY = (
    "the lab's API is for whoever may start runs: log in with the runner role, "
    "or send Authorization: Bearer <a runner's token>"
)


def refusal(request: HttpRequest) -> JsonResponse | None:
    """None when the request may use the lab; else the 401 or 403 that says why."""
    sent = request.headers.get(LAB_KEY_HEADER)
    if sent is not None:
        return None if constant_time_compare(sent, lab_key()) else _refuse(401, "wrong lab key")
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        row = tokens.find(token.strip()) if scheme.lower() == "bearer" else None
        if row is None:
            return _refuse(401, "the token is unknown or revoked")
        if row.role != row.Role.RUNNER:
            return json_error(403, f"this token may not start runs; {WHO_MAY}")
        return None
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_active:
        return _refuse(401, WHO_MAY)
    if not user.has_perm(roles.perm(roles.RUN)):
        return json_error(403, f"{user.get_username()} may not start runs; {WHO_MAY}")
    if request.method == "POST":
        # A cookie authorizes this request: a page elsewhere could ride on it.
        failed = CsrfViewMiddleware(_unused).process_view(request, _unused, (), {})
        if failed is not None:
            return json_error(403, "CSRF check failed: send the X-CSRFToken header")
    return None


def _refuse(status: int, why: str) -> JsonResponse:
    response = json_error(status, why)
    response["WWW-Authenticate"] = 'Bearer realm="lifecycle"'
    return response


def _unused(request: HttpRequest) -> HttpResponse:  # the middleware's get_response, unused
    raise AssertionError("not called")
