"""The fault suite (``lifecycle chaos``): runs of the lab's ``slow`` scenario while each
fault strikes a real stack (RabbitMQ and PostgreSQL away behind their proxies, kill -9 of
the ingestor, the worker and the web process, the feed's connection terminated). Every
run must keep all its reads and broker steps, be stored once, get its true verdict, and
carry no finding but those a real redelivery causes."""

from __future__ import annotations

import os

import pytest

from lifecycle.scenarios.chaos import FAULTS, run_suite, table
from tests.services import require_postgres, require_rabbitmq

require_postgres()
require_rabbitmq()

pytestmark = pytest.mark.acceptance


def test_no_fault_loses_doubles_or_misjudges_anything(capsys: pytest.CaptureFixture[str]) -> None:
    name = os.environ.get("TEST_DATABASE_NAME") or "test_lifecycle"
    # The live feed's connection terminated is left to test_feed (the feed is not on a
    # run's path: ingest stores, the probe polls); `lifecycle chaos` strikes it too.
    faults = [f for f in FAULTS if f != "feed"]
    results = run_suite(
        faults,
        log=lambda line: None,
        where={
            "database": f"{name}_chaos"[:63],
            "namespace": f"{os.environ['LIFECYCLE_NAMESPACE']}-chaos",
        },
        # runs started at 0, 1.5, 3 (the strike) and 4.5 s: some before, some during
        seconds=5.0,
    )
    report = table(results)
    print(report)  # shown with -s, and in the failure below

    assert [r.fault for r in results] == faults
    failed = [r for r in results if not r.passed]
    assert not failed, "\n" + report
    # Every fault saw runs through, and the outages did strike: starts were refused then.
    assert all(r.runs for r in results), "\n" + report
    outages = [r for r in results if r.fault in ("rabbitmq", "postgres")]
    assert all(r.refused_starts + sum(a.task_key is None for a in r.runs) for r in outages)
