"""Response headers that keep an observed system's data from becoming code in a page.

Everything an observed system sends is escaped where HTML is made (``dashboard.render``,
the templates); the Content-Security-Policy is the second wall: no inline script runs, no
script comes from elsewhere, the page cannot be framed, and forms post only here. Inline
``style`` attributes stay allowed (the timeline's lanes are custom properties), style
elements do not. htmx is told the same in ``base.html`` (no script tags from fragments, no
eval, no injected indicator styles).
"""

from __future__ import annotations

from collections.abc import Callable

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
