"""Template helpers: status chips carry a shape and a label, never colour alone."""

from __future__ import annotations

import functools
from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()

SYMBOLS = {"PENDING": "○", "RUNNING": "◐", "COMPLETED": "✓", "FAILED": "✕"}


@register.simple_tag
@functools.lru_cache(maxsize=256)
def status_chip(status: str | None) -> str:
    label = status or "unknown"
    symbol = SYMBOLS.get(label, "•")
    return format_html(
        '<span class="chip st-{}" data-status="{}"><span aria-hidden="true">{}</span> {}</span>',
        label.lower(),
        label,
        symbol,
        label,
    )


@register.simple_tag
def verdict_chip(verdict: str | None) -> str:
    if verdict == "pass":
        return format_html(
            '<span class="chip v-pass"><span aria-hidden="true">✓</span> pass</span>'
        )
    if verdict == "fail":
        return format_html(
            '<span class="chip v-fail"><span aria-hidden="true">✕</span> fail</span>'
        )
    return format_html(
        '<span class="chip v-running"><span aria-hidden="true">◌</span> running</span>'
    )


@register.filter
def age(value: datetime | None) -> str:
    if value is None:
        return ""
    seconds = (timezone.now() - value).total_seconds()
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h ago"
    return f"{seconds // 86400:.0f} d ago"


@register.filter
def short_key(value: str | None) -> str:
    return (value or "")[:8]
