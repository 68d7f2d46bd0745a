"""The fault suite (``lifecycle chaos``): runs of the lab's ``slow`` scenario while each
fault strikes a real stack (RabbitMQ and PostgreSQL away behind their proxies, kill -9 of
the ingestor, the worker and the web process, the feed's connection terminated). Every
run must keep all its reads and broker steps, be stored once, get its true verdict, and
carry no finding but those a real redelivery causes."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from lifecycle.scenarios.chaos import FAULTS, FaultResult, run_suite, table
from tests.services import require_postgres, require_rabbitmq

require_postgres()
require_rabbitmq()

pytestmark = pytest.mark.acceptance

# Two stacks strike at once, each its share of the faults, one after another as before. A
# fault reaches only its own stack (its proxies, its database's backends, its processes,
# its namespace), so neither half sees the other's; the suite takes half the time. The
# heavy ones (the outages, kill-node's second node) are split between them, and kill-node
# is in one half only: its second node is found by name on the server.
HALVES = (
    ("rabbitmq", "kill-ingest", "kill-web", "feed"),
    ("postgres", "kill-worker", "kill-node"),
)


def half(faults: tuple[str, ...], suffix: str) -> list[FaultResult]:
    name = os.environ.get("TEST_DATABASE_NAME") or "test_lifecycle"
    return run_suite(
        list(faults),
        log=lambda line: None,
        where={
            "database": f"{name}_chaos{suffix}"[:63],
            "namespace": f"{os.environ['LIFECYCLE_NAMESPACE']}-chaos{suffix.replace('_', '-')}",
        },
        # runs started at 0, 1.5, 3 (the strike), 4.5 and 6 s: some before, some during
        seconds=6.5,
    )


def test_no_fault_loses_doubles_or_misjudges_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert sorted(f for faults in HALVES for f in faults) == sorted(FAULTS)
    with ThreadPoolExecutor(len(HALVES)) as pool:
        halves = list(pool.map(half, HALVES, ("", "_b")))
    by_fault = {r.fault: r for results in halves for r in results}
    results = [by_fault[f] for f in FAULTS if f in by_fault]
    report = table(results)
    print(report)  # shown with -s, and in the failure below

    assert [r.fault for r in results] == list(FAULTS)
    failed = [r for r in results if not r.passed]
    assert not failed, "\n" + report
    # Every fault saw runs through, and the outages did strike: starts were refused then.
    assert all(r.runs for r in results), "\n" + report
    outages = [r for r in results if r.fault in ("rabbitmq", "postgres")]
    assert all(r.refused_starts + sum(a.task_key is None for a in r.runs) for r in outages)
