"""Who may do what: three roles, as Django groups holding the permissions of ``Run.Meta``.

- ``viewer`` reads: pages, permalinks, timelines, events, websockets;
- ``runner`` also starts runs (the panel, Resubmit, Edit and run) and posts events;
- ``maintainer`` also manages capture, scenario files and tokens (in the admin, with
  staff status).

A superuser may do everything. ``ensure`` makes the groups after every migrate.
"""

from __future__ import annotations

from typing import Any

READ, RUN, MANAGE = "read_dashboard", "start_run", "manage_capture"
ROLES: dict[str, tuple[str, ...]] = {
    "viewer": (READ,),
    "runner": (READ, RUN),
    "maintainer": (READ, RUN, MANAGE),
}
# What a maintainer may also do in the admin: look at what is stored, and manage the
# watched databases and the tokens, and lift login lockouts.
MAINTAINER_ADMIN = (
    "view_event",
    "view_run",
    "view_taskcheck",
    "view_watcheddatabase",
    "delete_watcheddatabase",
    "view_apitoken",
    "change_apitoken",
    "view_loginlockout",
    "delete_loginlockout",
)


def ensure(**signal: Any) -> None:
    """Create the role groups with their permissions (idempotent; a post_migrate hook)."""
    from django.contrib.auth.models import Group, Permission

    perms = {p.codename: p for p in Permission.objects.filter(content_type__app_label="lifecycle")}
    if not all(c in perms for c in (READ, RUN, MANAGE)):
        return  # the lifecycle app's permissions are not made yet
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = [perms[c] for c in codenames]
        if role == "maintainer":
            wanted += [perms[c] for c in MAINTAINER_ADMIN if c in perms]
        group.permissions.add(*wanted)


def perm(codename: str) -> str:
    return f"lifecycle.{codename}"
