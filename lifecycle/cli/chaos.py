"""Run scenarios while faults strike, and print what every run's events say (the fault
suite; see ``lifecycle.scenarios.chaos``). It starts a stack of its own on a free port, with a fresh
database ``<database>_chaos`` and the namespace ``<namespace>-chaos``, so it never
disturbs a running ``make run``; the servers themselves are never stopped: the faults
are the proxies between the stack and them, and kills of the stack's own processes.

Exit status 0 when every fault passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lifecycle.scenarios.chaos import FAULTS

    parser.add_argument(
        "--fault",
        action="append",
        choices=FAULTS,
        help="run only this fault (repeatable; default: all of them)",
    )
    parser.add_argument("--scenario", default="slow", help="the scenario to run (default slow)")
    parser.add_argument(
        "--seconds", type=float, default=12.0, help="how long runs are started for, per fault"
    )
    parser.add_argument("--every", type=float, default=1.5, help="seconds between two runs")
    parser.add_argument(
        "--outage", type=float, default=5.0, help="how long RabbitMQ or PostgreSQL stay away"
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="stop and start this machine's real RabbitMQ and PostgreSQL (rabbitmqctl, "
        "pg_ctlcluster; as root) instead of cutting the proxies: every client of theirs sees it",
    )


def handle(command: Any, options: dict[str, Any]) -> int | None:
    from lifecycle.scenarios.catalogue import get_scenario
    from lifecycle.scenarios.chaos import run_suite, table

    try:
        get_scenario(options["scenario"])
    except Exception as exc:
        command.stderr.write(f"error: {exc}")
        return 2
    results = run_suite(
        options["fault"],
        log=command.stdout.write,
        scenario=options["scenario"],
        seconds=options["seconds"],
        every=options["every"],
        outage=options["outage"],
        where={"real": options["real"]},
    )
    command.stdout.write("\n" + table(results))
    return 0 if all(r.passed for r in results) else 1
