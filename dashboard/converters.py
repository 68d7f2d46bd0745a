"""A task key in a URL path: whatever the observed system uses, "/" and dots included.

A key is kept readable (``/tasks/tenant/42/job 7``), but a browser removes a ``.`` or
``..`` segment from a URL before asking for it, percent-encoded or not: a key such as
``../../admin/auth/user/`` would make its task's link another page. So such a segment is
written with a ``~`` before it (``/tasks/~../~../admin/auth/user/``), and a segment that
is only ``~`` and dots gains one more, so that every key has one path and back.
"""

from __future__ import annotations

import re

from django.urls import register_converter

# A segment of ``~`` (none or more) then one or two dots: what gains or loses a ``~``.
_DOTS = re.compile(r"(?:(?<=/)|^)(~*\.\.?)(?=/|$)")
_ESCAPED = re.compile(r"(?:(?<=/)|^)~(~*\.\.?)(?=/|$)")


def to_path(task_key: str) -> str:
    """The key as its URLs' path holds it (before percent-encoding): no dot segment."""
    return _DOTS.sub(r"~\1", task_key)


def from_path(path: str) -> str:
    """The key whose URLs' path this is (``to_path`` undone)."""
    return _ESCAPED.sub(r"\1", path)


class TaskKeyConverter:
    """``<task_key:...>``: Django's ``path`` converter (anything, "/" included, but a NUL),
    with the key's dot segments escaped by ``reverse`` and unescaped for the view. No key
    holds a NUL (events refuse one, PostgreSQL's text cannot hold it): a path with one is
    a 404, not the database's error (a 500)."""

    regex = r"[^\x00]+"

    def to_python(self, value: str) -> str:
        return from_path(value)

    def to_url(self, value: str) -> str:
        return to_path(value)


# Once, for the pages' routes and the websockets' (a second registration is refused).
register_converter(TaskKeyConverter, "task_key")
