"""Login throttling: a name or a client address that fails too often is locked for a while.

Every wrong password (or unknown name) is a ``LoginFailure`` row. When a name has
``LIFECYCLE_LOGIN_FAILURES`` of them within ``LIFECYCLE_LOGIN_WINDOW`` seconds, or an address
``LIFECYCLE_LOGIN_ADDRESS_FAILURES``, it is locked (a ``LoginLockout`` row) for
``LIFECYCLE_LOGIN_LOCKOUT`` seconds: every login for that name, or from that address, is
refused before its password is even checked, the right one included. Attempts refused by a
lock are logged, not counted, so a lock ends when it said it would, and its end forgets the
failures that set it (as the window does when it is as long as the lock). A successful login
clears its name's failures; ``lifecycle login lift`` or the admin ends a lock sooner.

An attempt is counted before its password is checked (``attempt``), so that attempts made
at once see each other: of any number sent together, at most the limit are checked.

The check sits in the authentication backend (``ThrottledBackend``), so it holds for every
way in: the login page, the admin's login, and anything else that calls ``authenticate``.
The forms below only turn the refusal into a sentence that says when to try again.

Why not django-axes: it would bring its own tables, settings, middleware, backend and
signals for what is here two small tables and one backend, with the project's own CLI and
admin page; and its many options (cool-off callables, reverse-proxy parsing, several
handlers) are more to configure than to gain.

The client address is ``REMOTE_ADDR``: behind a reverse proxy, that is the proxy's, unless
daphne is told to read the proxy's headers (README: Lockouts).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from lifecycle.models import LoginFailure, LoginLockout

logger = logging.getLogger(__name__)

MAX_KEY = 150  # a name's length in Django's user model; longer names are cut to it


@dataclass(frozen=True)
class Lock:
    """A lockout in force: what it locks (a name or an address) and until when."""

    scope: str
    key: str
    until: datetime
    failures: int

    def retry_after(self, now: datetime | None = None) -> int:
        """Whole seconds until the lock ends (at least 1): a ``Retry-After``."""
        left = (self.until - (now or timezone.now())).total_seconds()
        return max(1, math.ceil(left))

    def sentence(self, now: datetime | None = None) -> str:
        now = now or timezone.now()
        minutes = math.ceil(self.retry_after(now) / 60)
        # The minute shown is never before the lock's end; a later day is named.
        end = self.until.astimezone(UTC)
        if end.second or end.microsecond:
            end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
        when = (
            f"{end:%H:%M}" if end.date() == now.astimezone(UTC).date() else f"{end:%Y-%m-%d %H:%M}"
        )
        who = "this name" if self.scope == LoginLockout.Scope.USERNAME else "your address"
        return (
            f"Too many failed logins for {who}: logging in is refused until "
            f"{when} UTC (in {minutes} minute{'s' if minutes != 1 else ''}), "
            "even with the right password. A maintainer can lift the lock sooner."
        )


def address(request: HttpRequest | None) -> str:
    """The client's address as the web server saw it; "" when there is no request."""
    if request is None:
        return ""
    return str(request.META.get("REMOTE_ADDR") or "")[:64]


def locked(username: str | None, addr: str = "", now: datetime | None = None) -> Lock | None:
    """The lockout that refuses this name or this address now (the longer one), or None."""
    which = Q()
    if username:
        which |= Q(scope=LoginLockout.Scope.USERNAME, key=username[:MAX_KEY])
    if addr:
        which |= Q(scope=LoginLockout.Scope.ADDRESS, key=addr)
    if not which:
        return None
    row = (
        LoginLockout.objects.filter(which, until__gt=now or timezone.now())
        .order_by("-until")
        .first()
    )
    if row is None:
        return None
    return Lock(row.scope, row.key, row.until, row.failures)


def attempt(username: str, addr: str = "", now: datetime | None = None) -> tuple[int, Lock | None]:
    """Count a login attempt as a failure before its password is checked, so that attempts
    made at once see each other: without it, 40 concurrent guesses all passed ``locked``
    before the first of them was counted, and a right one among them got in.

    Gives the attempt's row (``failed`` keeps it, ``succeeded`` forgets it) and the lock
    that refuses it when, with the attempts still in flight, its name or address already
    has more than its limit: then its row is gone (a refused attempt does not count) and
    the lock is in force. Of any number of attempts at once, at most the limit have their
    password checked: each counts after its own row is in, so the k-th row in sees k."""
    now = now or timezone.now()
    username = username[:MAX_KEY]
    since = now - timedelta(seconds=settings.LIFECYCLE_LOGIN_WINDOW)
    _prune(now, since)
    row = LoginFailure.objects.create(username=username, address=addr, at=now)
    for scope, key, count, limit in _counts(username, addr, since):
        if count > limit:
            row.delete()
            return row.pk, _lock(scope, key, count - 1, now)
    return row.pk, None


def _prune(now: datetime, since: datetime) -> None:
    # The table stays bounded on write: failures past the window, and ended locks, go;
    # a lock's end forgets the failures that set it, else the first attempt after it (the
    # right password too) would be over the limit again when the lock is shorter than the
    # window.
    LoginFailure.objects.filter(at__lt=since).delete()
    for ended in LoginLockout.objects.filter(until__lte=now):
        same = (
            Q(username=ended.key)
            if ended.scope == LoginLockout.Scope.USERNAME
            else Q(address=ended.key)
        )
        LoginFailure.objects.filter(same, at__lte=ended.since).delete()
        ended.delete()


def _counts(username: str, addr: str, since: datetime) -> list[tuple[str, str, int, int]]:
    """(scope, key, failures within the window, the limit) of a name and an address."""
    recent = LoginFailure.objects.filter(at__gte=since)
    counts: list[tuple[str, str, int, int]] = [
        (
            LoginLockout.Scope.USERNAME,
            username,
            recent.filter(username=username).count(),
            settings.LIFECYCLE_LOGIN_FAILURES,
        )
    ]
    if addr:
        counts.append(
            (
                LoginLockout.Scope.ADDRESS,
                addr,
                recent.filter(address=addr).count(),
                settings.LIFECYCLE_LOGIN_ADDRESS_FAILURES,
            )
        )
    return counts


def _lock(scope: str, key: str, count: int, now: datetime) -> Lock:
    until = now + timedelta(seconds=settings.LIFECYCLE_LOGIN_LOCKOUT)
    LoginLockout.objects.bulk_create(
        [LoginLockout(scope=scope, key=key, failures=count, since=now, until=until)],
        update_conflicts=True,
        unique_fields=["scope", "key"],
        update_fields=["failures", "since", "until"],
    )
    logger.warning(
        "login: %s %r locked until %s: %d failed logins within %d s",
        scope,
        key,
        until.isoformat(timespec="seconds"),
        count,
        settings.LIFECYCLE_LOGIN_WINDOW,
    )
    return Lock(scope, key, until, count)


def failed(
    username: str, addr: str = "", now: datetime | None = None, counted: int | None = None
) -> list[Lock]:
    """Count a failed login (``counted``: the row ``attempt`` made for it before its
    password was checked); lock its name, or its address, once they have failed too often
    within the window. The locks this failure set."""
    now = now or timezone.now()
    username = username[:MAX_KEY]
    since = now - timedelta(seconds=settings.LIFECYCLE_LOGIN_WINDOW)
    if counted is None:
        _prune(now, since)
        LoginFailure.objects.create(username=username, address=addr, at=now)
    return [
        _lock(scope, key, count, now)
        for scope, key, count, limit in _counts(username, addr, since)
        if count >= limit
    ]


def succeeded(username: str) -> None:
    """A right password: the name's failures are forgotten (its address's are kept)."""
    LoginFailure.objects.filter(username=username[:MAX_KEY]).delete()


def lift(key: str) -> tuple[list[Lock], int]:
    """End the locks on a name or an address now, and forget its failures, so that its next
    wrong password starts a fresh count: (the locks lifted, in force or not; failures)."""
    rows = list(LoginLockout.objects.filter(key=key))
    LoginLockout.objects.filter(pk__in=[r.pk for r in rows]).delete()
    forgotten, _ = LoginFailure.objects.filter(Q(username=key) | Q(address=key)).delete()
    for row in rows:
        logger.warning("login: %s %r unlocked by hand", row.scope, row.key)
    return [Lock(r.scope, r.key, r.until, r.failures) for r in rows], forgotten


def in_force(now: datetime | None = None) -> list[Lock]:
    """Every lockout still in force, the latest to end first."""
    rows = LoginLockout.objects.filter(until__gt=now or timezone.now()).order_by("-until")
    return [Lock(r.scope, r.key, r.until, r.failures) for r in rows]


class ThrottledBackend(ModelBackend):
    """Django's backend, behind the lock: a locked name or address is refused before its
    password is checked, and every failure is counted."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None  # not a name and password: another backend's business
        addr = address(request)
        lock = locked(username, addr)
        counted = None
        if lock is None:
            counted, lock = attempt(username, addr)
        if lock is not None:
            logger.warning(
                "login refused for %r from %s: %s %r is locked until %s",
                username[:MAX_KEY],
                addr or "no address",
                lock.scope,
                lock.key,
                lock.until.isoformat(timespec="seconds"),
            )
            if request is not None:
                request.login_lockout = lock  # type: ignore[attr-defined]
            # Stops authenticate(): no other backend may let the name in meanwhile.
            raise PermissionDenied(lock.sentence())
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            failed(username, addr, counted=counted)
        else:
            succeeded(username)
        return user

    async def aauthenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        # ModelBackend's own async version would skip the lock.
        return await sync_to_async(self.authenticate)(request, username, password, **kwargs)


def lockout_of(request: HttpRequest | None) -> Lock | None:
    """The lock that refused this request's login, if one did."""
    return getattr(request, "login_lockout", None)


class LockoutMessage:
    """A login form's error says when to try again when a lock refused it."""

    request: HttpRequest | None

    def get_invalid_login_error(self) -> ValidationError:
        lock = lockout_of(self.request)
        if lock is not None:
            return ValidationError(lock.sentence(), code="locked")
        return super().get_invalid_login_error()  # type: ignore[misc]


class LoginForm(LockoutMessage, AuthenticationForm):
    pass


class AdminLoginForm(LockoutMessage, AdminAuthenticationForm):
    pass
