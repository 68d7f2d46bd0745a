"""Tokens for machines: made, found by their hash, revoked. The token is shown once."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from lifecycle.models import ApiToken

PREFIX = "lci_"
# last_used_at is written at most this often per token: not a write per request.
TOUCH_EVERY_SECONDS = 60


class TokenError(ValueError):
    """A token that cannot be made or revoked: the text says why."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(name: str, role: str) -> tuple[ApiToken, str]:
    """A new token: its row, and the token itself (never stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise TokenError("a token's name is 1 to 100 characters")
    if role not in ApiToken.Role.values:
        raise TokenError(f"role must be one of {', '.join(ApiToken.Role.values)}")
    if ApiToken.objects.filter(name=name).exists():
        raise TokenError(f"a token named {name!r} exists: revoke it, or choose another name")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(name=name, role=role, digest=digest(token), prefix=token[:12])
    return row, token


def find(token: str) -> ApiToken | None:
    """The live token this is, or None (unknown or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    row = ApiToken.objects.filter(digest=digest(token), revoked_at__isnull=True).first()
    if row is not None:
        now = timezone.now()
        if (
            row.last_used_at is None
            or (now - row.last_used_at).total_seconds() > TOUCH_EVERY_SECONDS
        ):
            ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row


def revoke(name: str) -> ApiToken:
    row = ApiToken.objects.filter(name=name).first()
    if row is None:
        raise TokenError(f"no token named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
    return row
