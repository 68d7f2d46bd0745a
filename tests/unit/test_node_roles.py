"""A node's roles and the deployment's mark, as a node reads them
(lifecycle/nodes/deployment.py)."""

from __future__ import annotations

import pytest


def test_a_deployment_mark_is_shown_without_control_characters() -> None:
    from lifecycle.nodes.deployment import _shown

    assert _shown("dbname=x host=db") == "dbname=x host=db"
    assert _shown("a\x1b]0;pwned\x07\nb") == "a?]0;pwned??b"
    assert _shown("x" * 500) == "x" * 200 + "..."
    assert _shown(["not", "text"]) == "" and _shown(None) == ""


def test_roles_are_parsed_in_order_and_unknown_ones_refused() -> None:
    from lifecycle.nodes.deployment import ROLES, RolesError, parse_roles

    assert parse_roles(None) == ROLES and parse_roles(" ") == ROLES
    assert parse_roles("maintain, web") == ("web", "maintain")
    for bad in ("web,bogus", ",,", "WEB"):
        with pytest.raises(RolesError):
            parse_roles(bad)
