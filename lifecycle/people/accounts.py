"""People's accounts: the first admin of a fresh installation, and accounts with a role."""

from __future__ import annotations

import secrets

from lifecycle.people import roles

FIRST_ADMIN = "admin"


class AccountError(ValueError):
    """An account that cannot be made: the text says why."""


def first_admin() -> tuple[str, str] | None:
    """On a database with no account at all, an admin with a random password: (name,
    password), to be shown once. None when any account exists."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    if users.exists():
        return None
    password = secrets.token_urlsafe(12)
    users.create_superuser(FIRST_ADMIN, password=password)
    return FIRST_ADMIN, password


def add(name: str, role: str, password: str | None = None) -> str:
    """An account with a role (its group); the password, made at random unless given, in
    which case Django's password validators (AUTH_PASSWORD_VALIDATORS) must accept it.
    A maintainer also gets staff status, to reach the admin."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    if role not in roles.ROLES:
        raise AccountError(f"role must be one of {', '.join(roles.ROLES)}")
    users = get_user_model().objects
    if users.filter(username=name).exists():
        raise AccountError(f"an account named {name!r} exists")
    if password:
        try:
            validate_password(password, users.model(username=name))
        except ValidationError as exc:
            raise AccountError(f"password refused: {' '.join(exc.messages)}") from None
    roles.ensure()
    password = password or secrets.token_urlsafe(12)
    user = users.create_user(name, password=password, is_staff=role == "maintainer")
    user.groups.add(Group.objects.get(name=role))
    return password
