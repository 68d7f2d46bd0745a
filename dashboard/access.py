"""Who is asking, and what they may do: a session (a person, logged in), a token (a
machine, ``Authorization: Bearer``), or nobody (who may read only where
``LIFECYCLE_PUBLIC_READ`` is on, and never write).

``AccessMiddleware`` puts an ``Access`` on every request and turns away whoever may not
read: a page redirects to the login, the API answers 401. Writes check ``can`` in their
views (``needs``). A request a token authorizes carries no cookie that a page elsewhere
could ride on, so it skips the CSRF check; a session's write never does, and no view that
a cookie can authorize is ``csrf_exempt``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseRedirect
from django.urls import reverse

from lifecycle.people import roles, tokens
from lifecycle.runtime.http import json_error

# Paths that are not the dashboard's: the lab (the system under test, which checks its own
# callers: lifecycle.lab.access), the static files, logging in and out, and the admin (its
# own login).
OPEN_PREFIXES = ("/lab/", "/static/", "/login", "/logout", "/admin/")


@dataclass(frozen=True)
class Access:
    who: str  # a user's name, "token <name>", or "" for nobody
    read: bool = False
    run: bool = False
    manage: bool = False
    by_token: bool = False

    def can(self, what: str) -> bool:
        return bool(getattr(self, what))


NOBODY = Access("")


def of_user(user: Any) -> Access:
    """What a session's user may do (their groups' permissions; a superuser all)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return public()
    return Access(
        user.get_username(),
        read=user.has_perm(roles.perm(roles.READ)),
        run=user.has_perm(roles.perm(roles.RUN)),
        manage=user.has_perm(roles.perm(roles.MANAGE)),
    )


def public() -> Access:
    return Access("", read=True) if settings.LIFECYCLE_PUBLIC_READ else NOBODY


def of_token(token: str) -> Access | None:
    row = tokens.find(token)
    if row is None:
        return None
    maintainer = row.role == row.Role.MAINTAINER
    runner = maintainer or row.role == row.Role.RUNNER
    return Access(f"token {row.name}", read=True, run=runner, manage=maintainer, by_token=True)


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


class AccessMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # path_info, the path the URLs are resolved by: request.path also holds the root
        # path, which daphne takes from a client's Daphne-Root-Path header.
        open_path = request.path_info.startswith(OPEN_PREFIXES)
        header = request.headers.get("Authorization", "")
        if header and not open_path:
            scheme, _, token = header.partition(" ")
            found = of_token(token.strip()) if scheme.lower() == "bearer" else None
            if found is None:
                return self._refuse(request, "the token is unknown or revoked", 401)
            request.access = found  # type: ignore[attr-defined]
            # No cookie authorizes this request: a page elsewhere cannot forge it.
            request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        else:
            request.access = of_user(getattr(request, "user", None))  # type: ignore[attr-defined]
        if not open_path and not request.access.read:  # type: ignore[attr-defined]
            return self._refuse(request, "log in, or send Authorization: Bearer <token>", 401)
        return self.get_response(request)

    @staticmethod
    def _refuse(request: HttpRequest, why: str, status: int) -> HttpResponse:
        if _is_api(request) or request.headers.get("Authorization"):
            response = json_error(status, why)
            response["WWW-Authenticate"] = 'Bearer realm="lifecycle"'
            return response
        login = reverse("login")
        return HttpResponseRedirect(f"{login}?next={quote(request.get_full_path())}")


def access_of(request: HttpRequest) -> Access:
    return getattr(request, "access", NOBODY)


WHAT = {
    "run": "start runs, post events or import timelines (the runner role)",
    "manage": "manage capture and scenarios (the maintainer role)",
}


def needs(what: str) -> Callable[[Any], Any]:
    """A view that needs ``run`` or ``manage``: 403 otherwise (JSON under /api/)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        def refusal(request: HttpRequest) -> HttpResponse:
            access = access_of(request)
            message = f"{access.who or 'you'} may not {WHAT[what]}"
            if _is_api(request):
                return json_error(403, message)
            # a sentence, not a page: the name in it is not markup
            return HttpResponseForbidden(message, content_type="text/plain; charset=utf-8")

        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if not access_of(request).can(what):
                    return refusal(request)
                return await view(request, *args, **kwargs)

            return async_wrapped

        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not access_of(request).can(what):
                return refusal(request)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def context(request: HttpRequest) -> dict[str, Any]:
    """Templates see ``access``: whether to offer Run, Resubmit and Edit and run."""
    return {"access": access_of(request)}


def may_read(scope: dict[str, Any]) -> bool:
    """Whether a websocket's session may read (its scope's user, or public read)."""
    return of_user(scope.get("user")).read
