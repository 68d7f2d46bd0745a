"""Run a scenario from the terminal; exit non-zero when any run fails (for CI jobs)."""

from __future__ import annotations

import getpass
import json
from typing import Any

from django.conf import settings

from lifecycle.models import Run
from lifecycle.scenarios import probe
from lifecycle.scenarios.catalogue import BodyError, UnknownScenario, get_scenario, parse_body


def add_arguments(parser: Any) -> None:
    parser.add_argument("scenario", help="a scenario (`lifecycle scenarios` lists them)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="run it N times")
    parser.add_argument("--json", action="store_true", help="print one JSON object per run")
    parser.add_argument(
        "--body", default=None, metavar="JSON", help="submit this JSON body instead of its own"
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help=f"the lab API's server (LAB_BASE_URL, {settings.LAB_BASE_URL})",
    )


def handle(command: Any, options: dict[str, Any]) -> int:
    out, err = command.stdout, command.stderr
    try:
        scenario = get_scenario(options["scenario"])
    except UnknownScenario as exc:
        err.write(str(exc))
        return 2
    if options["repeat"] < 1:
        err.write("--repeat must be at least 1")
        return 2
    edit: dict[str, Any] = {}
    if options["body"] is not None:
        try:
            edit["body"] = parse_body(options["body"])
        except BodyError as exc:
            err.write(f"--body: {exc}")
            return 2
    if scenario.unavailable:
        err.write(f"scenario {scenario.name} is unavailable: {scenario.unavailable}")
        return 2
    base_url = (options["base_url"] or settings.LAB_BASE_URL).rstrip("/")
    as_json = options["json"]
    failed = 0

    def progress(run: Run, status: str | None) -> None:
        if not as_json and status is not None:
            err.write(f"  run {run.id}: task {run.task_key} is {status}")

    for index in range(options["repeat"]):
        run = probe.create_run(scenario, base_url, started_by=f"{getpass.getuser()} (cli)", **edit)
        if not as_json:
            err.write(
                f"run {run.id}: {scenario.name} ({index + 1}/{options['repeat']}), "
                f"expecting {scenario.expected}"
            )
        probe.execute(run, progress)
        failed += run.verdict != Run.Verdict.PASS
        if as_json:
            out.write(
                json.dumps(
                    {
                        "id": run.id,
                        "scenario": run.scenario,
                        "task": run.task_key,
                        "verdict": run.verdict,
                        "expected": run.expected,
                        "observed": run.observed,
                        "error": run.error or None,
                    }
                )
            )
        else:
            detail = f" ({run.error})" if run.error else ""
            out.write(
                f"run {run.id}: {(run.verdict or 'no verdict').upper()} expected {run.expected}, "
                f"observed {run.observed or 'nothing'}{detail}"
            )
    if not as_json:
        out.write(f"{options['repeat'] - failed} passed, {failed} failed")
    return 1 if failed else 0
