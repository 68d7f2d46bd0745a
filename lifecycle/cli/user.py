"""Accounts for people: add one with a role (viewer, runner, maintainer)."""

from __future__ import annotations

from typing import Any

from lifecycle.people import accounts, roles


def add_arguments(parser: Any) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="make an account and print its password, once")
    add.add_argument("name")
    add.add_argument("--role", choices=list(roles.ROLES), required=True)


def handle(command: Any, options: dict[str, Any]) -> int:
    try:
        password = accounts.add(options["name"], options["role"])
    except accounts.AccountError as exc:
        command.stderr.write(str(exc))
        return 2
    command.stdout.write(password)
    command.stderr.write(
        f"account {options['name']!r} ({options['role']}): its password is shown this once"
    )
    return 0
