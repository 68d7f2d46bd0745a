"""Run every scenario many times and print which findings each produced (kind by scenario).

Every scenario of the scenario files: the lab's and an attached application's. Targets: each
bug scenario's findings, all of them, in at least 95 % of its runs; no finding at all in any
clean run. Exits 1 when a target is missed, so it can gate a CI job.
"""

from __future__ import annotations

import getpass
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection

from lifecycle.check.rules import KINDS, check
from lifecycle.scenarios import probe
from lifecycle.scenarios.catalogue import Scenario, active
from lifecycle.store import eventlog

FAULT_TARGET = 0.95
# Column headings of the printed matrix (a legend line spells them out).
COLUMN_NAMES = {
    "stale_read": "stale",
    "unwritten_read": "unwrit",
    "terminal_overwrite": "overwr",
    "forbidden_transition": "forbid",
    "non_monotonic_reads": "nonmon",
    "duplicate_execution": "dupl",
    "enqueue_before_commit": "enq<c",
    "stuck": "stuck",
    "swallowed_error": "swallw",
    "expectation_mismatch": "expect",
    "(none)": "none",
}
READ_KINDS = frozenset({"stale_read", "unwritten_read", "non_monotonic_reads"})
SETTLE_EVENTS = 1.0  # seconds for the ingestor to store a run's last reads before checking


def add_arguments(parser: Any) -> None:
    parser.add_argument("--runs", type=int, default=20, help="runs of each fault scenario")
    parser.add_argument("--clean-runs", type=int, default=25, help="runs of each clean scenario")
    parser.add_argument("--concurrency", type=int, default=6, help="runs at a time")
    parser.add_argument(
        "--scenario", action="append", default=None, help="only this scenario (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print the matrix as JSON")
    parser.add_argument(
        "--base-url",
        default=None,
        help="the dashboard's address, for scenarios with relative URLs (LAB_BASE_URL)",
    )


def one_run(scenario: Scenario, base_url: str) -> tuple[str, list[str], bool, int]:
    """Run once; return the finding kinds and whether the scenario's own finding was there."""
    try:
        who = f"{getpass.getuser()} (matrix)"
        run = probe.execute(probe.create_run(scenario, base_url, started_by=who))
        time.sleep(SETTLE_EVENTS)
        findings = check(eventlog.task_events(run.task_key), run.expected) if run.task_key else []
        return scenario.name, sorted({f.kind for f in findings}), caught(scenario, findings), run.id
    finally:
        connection.close()


def caught(scenario: Scenario, findings: list) -> bool:
    """Every finding the scenario names, with its cause; a mismatch said to be born in a
    commit also clears the reads (no read finding beside it)."""
    if not scenario.findings or not all(e.met_by(findings) for e in scenario.findings):
        return False
    if any(e.kind == "expectation_mismatch" and e.cause == "committed" for e in scenario.findings):
        return not any(f.kind in READ_KINDS for f in findings)
    return True


def handle(command: Any, options: dict[str, Any]) -> int:
    out, err = command.stdout, command.stderr
    catalogue = active().scenarios
    names = options["scenario"] or list(catalogue)
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        err.write(f"unknown scenario(s): {', '.join(unknown)}")
        return 2
    base_url = (options["base_url"] or settings.LAB_BASE_URL).rstrip("/")
    unavailable = {n: catalogue[n].unavailable for n in names if catalogue[n].unavailable}
    if unavailable and options["scenario"]:
        for name, why in unavailable.items():
            err.write(f"scenario {name} is unavailable: {why}")
        return 2
    for name, why in unavailable.items():
        err.write(f"skipping {name}, unavailable: {why}")
    names = [n for n in names if n not in unavailable]
    plan: list[Scenario] = []
    for name in names:
        scenario = catalogue[name]
        plan += [scenario] * (options["clean_runs"] if scenario.clean else options["runs"])
    # A scenario that kills its worker (the lab's redelivery) would redeliver the messages
    # of runs in flight beside it: its runs go last, one at a time.
    together = [s for s in plan if not s.alone]
    alone = [s for s in plan if s.alone]
    err.write(f"{len(plan)} runs against {base_url} ...")

    counts: dict[str, Counter[str]] = {name: Counter() for name in names}
    totals: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    began = time.monotonic()

    def record(result: tuple[str, list[str], bool, int]) -> None:
        name, kinds, hit, run_id = result
        totals[name] += 1
        hits[name] += hit
        counts[name].update(kinds or ["(none)"])
        err.write(f"  run {run_id} {name}: {', '.join(kinds) or 'no finding'}")

    with ThreadPoolExecutor(max_workers=max(1, options["concurrency"])) as pool:
        for result in pool.map(lambda s: one_run(s, base_url), together):
            record(result)
    for scenario in alone:
        record(one_run(scenario, base_url))

    rows, missed = [], []
    for name in names:
        scenario, n = catalogue[name], totals[name]
        if scenario.clean:
            ok = counts[name]["(none)"] == n
            target = f"no finding in {n}/{n}"
        else:
            ok = hits[name] >= FAULT_TARGET * n
            wanted = " + ".join(str(e) for e in scenario.findings)
            target = f"{wanted} in {hits[name]}/{n}, target ≥ {FAULT_TARGET:.0%}"
        if not ok:
            missed.append(name)
        rows.append(
            {
                "scenario": name,
                "runs": n,
                "counts": dict(counts[name]),
                "caught": hits[name],
                "target": target,
                "met": ok,
            }
        )

    if options["json"]:
        out.write(json.dumps({"rows": rows, "seconds": round(time.monotonic() - began, 1)}))
    else:
        columns = [*KINDS, "(none)"]
        short = COLUMN_NAMES
        width = max(len(n) for n in names) + 2
        out.write("  ".join(f"{short[k]} = {k}" for k in columns))
        out.write(
            "scenario".ljust(width) + "runs  " + "  ".join(short[c] for c in columns) + "  target"
        )
        for row in rows:
            cells = "  ".join(str(row["counts"].get(c, "·")).rjust(len(short[c])) for c in columns)
            verdict = "met" if row["met"] else "MISSED"
            out.write(
                f"{row['scenario'].ljust(width)}{row['runs']:>4}  {cells}  "
                f"{verdict}: {row['target']}"
            )
        out.write(
            f"{sum(totals.values())} runs in {time.monotonic() - began:.0f} s; "
            f"{'all targets met' if not missed else 'missed: ' + ', '.join(missed)}"
        )
    return 1 if missed else 0
