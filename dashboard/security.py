"""Response headers that keep an observed system's data from becoming code in a page, and
the same-origin rule for websockets.

Everything an observed system sends is escaped where HTML is made (``dashboard.render``,
the templates); the Content-Security-Policy is the second wall: no inline script runs, no
script comes from elsewhere, the page cannot be framed, and forms post only here. Inline
``style`` attributes stay allowed (the timeline's lanes are custom properties), style
elements do not. htmx is told the same in ``base.html`` (no script tags from fragments, no
eval, no injected indicator styles).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http import HttpRequest, HttpResponse

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class SameOriginWebsockets:
    """Websockets only from this server's own pages: the ``Origin`` must name the very
    scheme, host and port the socket was opened on (its ``Host``), or be one of
    ``CSRF_TRUSTED_ORIGINS`` (``LIFECYCLE_TRUSTED_ORIGINS``). ``AllowedHostsOriginValidator``
    alone matches host names only, so a page on another port of an allowed host (an
    observed application, a notebook) could open one with a reader's cookie: cookies are
    not bound to ports. The scheme is https behind TLS (``LIFECYCLE_HTTPS``), else http,
    as Django's CSRF check has it: an http page of this host is not this https site."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not _same_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


def _same_origin(scope: dict[str, Any]) -> bool:
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    origin, host = headers.get(b"origin"), headers.get(b"host")
    if not origin or not host:
        return False
    text = origin.decode("latin-1").lower()
    if settings.LIFECYCLE_HTTPS and text in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parts = urlsplit(text)
    scheme = "https" if settings.LIFECYCLE_HTTPS else "http"
    return parts.scheme == scheme and parts.netloc == host.decode("latin-1").lower()
