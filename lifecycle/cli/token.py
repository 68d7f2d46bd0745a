"""Tokens for machines (the JSON API, the pytest plugin): create one, list them, revoke one."""

from __future__ import annotations

from typing import Any

from lifecycle.models import ApiToken
from lifecycle.people import tokens


def add_arguments(parser: Any) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token and print it, once")
    create.add_argument("name", help="what uses it, e.g. ci or billing-api")
    create.add_argument("--role", choices=ApiToken.Role.values, default=ApiToken.Role.VIEWER)
    actions.add_parser("list", help="every token, with its role and when it was last used")
    revoke = actions.add_parser("revoke", help="refuse this token from now on")
    revoke.add_argument("name")


def handle(command: Any, options: dict[str, Any]) -> int:
    out, err = command.stdout, command.stderr
    try:
        if options["action"] == "create":
            row, token = tokens.create(options["name"], options["role"])
            out.write(token)
            err.write(
                f"token {row.name!r} ({row.role}): shown this once, only its hash is kept. "
                "Send it as: Authorization: Bearer <token>"
            )
        elif options["action"] == "revoke":
            row = tokens.revoke(options["name"])
            out.write(f"revoked {row.name}")
        else:
            for row in ApiToken.objects.all():
                used = row.last_used_at.isoformat() if row.last_used_at else "never used"
                state = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "live"
                out.write(f"{row.name}\t{row.role}\t{row.prefix}…\t{state}\t{used}")
    except tokens.TokenError as exc:
        err.write(str(exc))
        return 2
    return 0
