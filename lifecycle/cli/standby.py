"""A hot standby of the database for the lab's replica-read scenario: start, stop, status.

``start`` prints ``LAB_REPLICA_URL=...``, the setting that points the lab at it.
"""

from __future__ import annotations

import json
from typing import Any

from lifecycle.runtime import standby


def add_arguments(parser: Any) -> None:
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument(
        "--keep", action="store_true", help="stop: keep the copy, so the next start is quick"
    )
    parser.add_argument("--json", action="store_true", help="status: print it as JSON")


def handle(command: Any, options: dict[str, Any]) -> int:
    out, err = command.stdout, command.stderr
    where = standby.configured()
    try:
        if options["action"] == "start":
            for line in standby.start(where):
                err.write(line)
            out.write(f"LAB_REPLICA_URL={where.url()}")
        elif options["action"] == "stop":
            for line in standby.stop(where, keep=options["keep"]):
                err.write(line)
        else:
            state = standby.status(where)
            if options["json"]:
                out.write(json.dumps(state))
            elif state["running"]:
                out.write(
                    f"a standby runs on port {state['port']} ({state['directory']}), replaying "
                    f"{state['delay']} behind the primary; last replayed commit "
                    f"{state['replayed_at']}\nLAB_REPLICA_URL={state['url']}"
                )
            else:
                out.write(
                    f"no standby runs on port {state['port']}: "
                    "python manage.py lifecycle standby start"
                )
                return 1
    except standby.StandbyError as exc:
        err.write(f"error: {exc}")
        return 1
    return 0
