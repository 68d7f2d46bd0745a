"""The admin: what is stored, read-only (events, runs, stored findings); the watched
databases (their addresses redacted) and the tokens, which maintainers may revoke; the
login lockouts in force, which they may lift.

Capture is installed with ``lifecycle capture install`` and tokens are made with
``lifecycle token create``, which print what must be shown once; the admin does not make
either. Scenario files are files (LIFECYCLE_SCENARIOS), checked at start-up.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from lifecycle.models import ApiToken, Event, LoginLockout, Run, TaskCheck, WatchedDatabase
from lifecycle.people import logins
from lifecycle.runtime.database import redact

# The admin's own login refuses a locked name or address with a sentence saying until when.
admin.site.login_form = logins.AdminLoginForm


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnly):
    list_display = ("id", "task_key", "source", "kind", "status", "at")
    list_filter = ("source", "kind")
    search_fields = ("task_key",)
    show_full_result_count = False  # a count(*) of a large event table is slow


@admin.register(Run)
class RunAdmin(ReadOnly):
    list_display = ("id", "scenario", "state", "verdict", "started_by", "started_at")
    list_filter = ("state", "verdict", "scenario")
    search_fields = ("task_key", "started_by")


@admin.register(TaskCheck)
class TaskCheckAdmin(ReadOnly):
    list_display = ("task_key", "kinds", "event_count", "checked_at")
    search_fields = ("task_key",)


@admin.register(WatchedDatabase)
class WatchedDatabaseAdmin(ReadOnly):
    list_display = ("name", "address", "added_at")
    fields = ("name", "address", "added_at")
    readonly_fields = fields

    @admin.display(description="address")
    def address(self, obj: WatchedDatabase) -> str:
        return redact(obj.url)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Stop following it (capture stays installed there: `capture remove` takes it away).
        return request.user.has_perm("lifecycle.delete_watcheddatabase")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnly):
    list_display = ("name", "role", "prefix", "created_at", "last_used_at", "revoked_at")
    fields = list_display
    readonly_fields = list_display
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} token(s) revoked.")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("lifecycle.change_apitoken")


@admin.register(LoginLockout)
class LoginLockoutAdmin(ReadOnly):
    """The names and addresses refused at login now; lifting one also forgets its failures."""

    list_display = ("scope", "key", "failures", "since", "until")
    fields = list_display
    readonly_fields = list_display
    search_fields = ("key",)
    actions = ["lift"]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).filter(until__gt=timezone.now())

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # lifting is the one way to end a lock
        return actions

    @admin.action(description="Lift the selected lockouts", permissions=["delete"])
    def lift(self, request: HttpRequest, queryset: Any) -> None:
        lifted = [lock for row in queryset for lock in logins.lift(row.key)[0]]
        self.message_user(request, f"{len(lifted)} lockout(s) lifted.")

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        logins.lift(obj.key)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("lifecycle.delete_loginlockout")
