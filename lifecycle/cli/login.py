"""Login lockouts: list the names and addresses refused now, lift one."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from lifecycle.people import logins


def add_arguments(parser: Any) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the names and addresses refused at login now, and until when")
    lift = actions.add_parser("lift", help="let a name or an address log in again now")
    lift.add_argument("key", metavar="username-or-address")


def handle(command: Any, options: dict[str, Any]) -> int:
    out, err = command.stdout, command.stderr
    if options["action"] == "lift":
        key = options["key"]
        lifted, forgotten = logins.lift(key)
        if not lifted and not forgotten:
            err.write(f"no lockout and no failed login for {key!r}")
            return 2
        for lock in lifted:
            out.write(f"lifted {lock.scope} {lock.key}")
        err.write(f"{forgotten} failed login(s) of {key!r} forgotten")
        return 0
    locks = logins.in_force()
    for lock in locks:
        until = lock.until.isoformat(timespec="seconds")
        out.write(f"{lock.scope}\t{lock.key}\tuntil {until}\t{lock.failures} failures")
    if not locks:
        err.write(
            "no lockout in force (a name is locked after "
            f"{settings.LIFECYCLE_LOGIN_FAILURES} failed logins within "
            f"{settings.LIFECYCLE_LOGIN_WINDOW} s, an address after "
            f"{settings.LIFECYCLE_LOGIN_ADDRESS_FAILURES})"
        )
    return 0
