"""The run page's "Compare with…" list: other finished runs of its scenario."""

from __future__ import annotations

from django import template

from lifecycle.models import Run
from lifecycle.views_compare import Candidate, compare_candidates

register = template.Library()


@register.simple_tag
def compare_with(run: Run) -> list[Candidate]:
    return compare_candidates(run)
