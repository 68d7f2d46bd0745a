"""What the deployment is doing: its nodes, who holds follow and maintain, and the lags.

Exits 1 when a part could not be asked (its error is in the output), so that a check
script or a monitor can tell; 0 otherwise."""

from __future__ import annotations

import json
from typing import Any

from lifecycle.nodes import status


def add_arguments(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="as GET /api/status answers")


def handle(command: Any, options: dict[str, Any]) -> int:
    found = status.deployment_status()
    if options["json"]:
        command.stdout.write(json.dumps(found.as_json(), indent=2))
    else:
        command.stdout.write("\n".join(status.text(found)))
    return 1 if found.errors else 0
