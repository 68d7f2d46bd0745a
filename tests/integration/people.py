"""People the access tests log in as: an account of a role, and a client logged in as it."""

from __future__ import annotations

import uuid
from typing import Any

from django.test import Client

from lifecycle.people import accounts


def as_role(role: str, **client: Any) -> Client:
    """A test client logged in as a new account of ``role`` (``Client``'s own arguments)."""
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    password = accounts.add(name, role)
    c = Client(**client)
    assert c.login(username=name, password=password)
    return c
