"""Template helpers: status chips carry a shape and a label, never colour alone; DOM ids.

No tag here runs a query: a page's view gathers what its template shows.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from dashboard import converters, dom
from dashboard.render import duration, status_chip, verdict_chip

register = template.Library()

register.simple_tag(status_chip)
register.simple_tag(verdict_chip)


@register.filter
def age(value: datetime | None) -> str:
    if value is None:
        return ""
    return f"{duration((timezone.now() - value).total_seconds(), whole=True)} ago"


@register.filter
def task_path(value: str) -> str:
    """A task key as its URLs hold it, before percent-encoding: for a URL that is not
    built by ``{% url %}`` (the websocket's)."""
    return converters.to_path(value)


@register.filter
def short_key(value: str | None) -> str:
    return (value or "")[:8]


@register.simple_tag(name="dom")
def dom_id(name: str, arg: object = None) -> str:
    """A shared DOM id (``dashboard.dom``): ``{% dom "timeline_events" %}``,
    ``{% dom "task_row" summary.task_key %}``, ``{% dom "event" view.id %}``."""
    if name == "task_row":
        return dom.task_row_id(str(arg))
    if name == "event":
        return dom.event_id(int(str(arg)))
    return dom.IDS[name]
