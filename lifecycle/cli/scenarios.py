"""List the scenarios and lifecycles of the scenario files, or check files before using them."""

from __future__ import annotations

import json
from typing import Any

from lifecycle.scenarios.catalogue import ScenarioFileError, active, load


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--check",
        nargs="+",
        metavar="FILE",
        default=None,
        help="check these files (as LIFECYCLE_SCENARIOS would list them) and say what they hold",
    )
    parser.add_argument("--json", action="store_true", help="print the scenarios as JSON")


def handle(command: Any, options: dict[str, Any]) -> int:
    out, err = command.stdout, command.stderr
    try:
        catalogue = load(options["check"]) if options["check"] else active()
    except ScenarioFileError as exc:
        err.write(str(exc))
        return 2
    if options["json"]:
        out.write(
            json.dumps(
                {
                    "files": list(catalogue.files),
                    "scenarios": [s.as_json() for s in catalogue.scenarios.values()],
                    "lifecycles": {t: lc.as_toml() for t, lc in catalogue.lifecycles.items()},
                },
                indent=2,
            )
        )
        return 0
    for path in catalogue.files:
        out.write(f"file {path}")
    for table, lc in catalogue.lifecycles.items():
        out.write(f"lifecycle of {table}: {' → '.join(lc.statuses)}")
    width = max((len(n) for n in catalogue.scenarios), default=0) + 2
    for s in catalogue.scenarios.values():
        what = "clean" if s.clean else f"bug {s.bug}: {', '.join(map(str, s.findings))}"
        if s.unavailable:
            what += f"; unavailable: {s.unavailable}"
        out.write(f"  {s.name.ljust(width)}expects {s.expected}; {what}")
    out.write(f"{len(catalogue.scenarios)} scenarios, {len(catalogue.lifecycles)} lifecycles")
    return 0
