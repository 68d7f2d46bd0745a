"""The Django jobs service (Django 5.2, django_dramatiq, ATOMIC_REQUESTS, nested atomic
helpers, on_commit, a cached view, its own database), attached through the README's Django
section alone: its keys carry their prefix on every timeline, each scenario gets the
findings of its bug and nothing else (once, and in the matrix), every read the API served
links to the commit whose version it returned, its own pytest report names its job by the
prefixed key, and its migrations, run while jobs are created and worked, fail no write and
stop no event."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import foreign
from tests.acceptance.test_foreign_scenarios import in_group, maintainer_checked, run_each
from tests.conftest import Stack, http, wait_for
from tests.foreign import failing_report, service_pytest, timeline
from tests.foreign_django import DJANGO_SERVICE, KEY_PREFIX, DjangoService

pytestmark = pytest.mark.acceptance

OURS = {
    "django-jobs-ok",
    "django-jobs-swallowed-error",
    "django-jobs-enqueue-before-commit",
    "django-jobs-stale-cache",
}

# What a failing assertion's history shows of each event's body
TOLD = ("xmin", "snapshot", "cached", "message_id", "attempt", "http_status")


def told(stack: Stack, run_id: int) -> str:
    """A run's history, for a failing assertion's message."""
    return foreign.told(stack, run_id, TOLD)


def findings_of(stack: Stack, run_id: int, wanted: set[str], timeout: float = 20) -> dict[str, Any]:
    """The run once its findings include every kind in ``wanted``."""
    seen: dict[str, Any] = {}

    def there() -> Any:
        seen.update(stack.get(f"/api/runs/{run_id}")[1])
        return wanted <= {f["kind"] for f in seen["findings"]} and dict(seen)

    try:
        return wait_for(there, timeout, what=f"run {run_id}'s findings")
    except AssertionError:
        raise AssertionError(f"wanted {wanted}\n{told(stack, run_id)}") from None


def reads_link_to_their_commits(stack: Stack, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every read the API served links to a commit of the status it returned; the reads."""
    events = timeline(stack, run["task"])["events"]
    commits = {e["id"]: e for e in events if e["source"] == "db"}
    reads = [e for e in events if e["source"] == "api" and e["kind"] == "read"]
    assert reads, told(stack, run["id"])
    for read in reads:
        linked = commits.get(read["version_of"])
        assert linked is not None and linked["status"] == read["status"], (
            f"read #{read['id']} ({read['status']}) links to no commit of its status\n"
            + told(stack, run["id"])
        )
    return reads


def test_each_scenario_of_the_django_service_gets_the_findings_of_its_bug(
    stack: Stack, django_service: DjangoService
) -> None:
    # Given the service's scenarios in the catalogue, under its file's title
    assert in_group(stack, "Jobs service (Django)") == OURS

    # When each is started through the JSON API, all at once
    started, runs = run_each(stack, OURS, 60)
    for name, run in sorted(runs.items()):  # shown with -s, or when the test fails
        print(f"{name}: {run['verdict']} {run['started_at']} .. {run['finished_at']}")

    # Then each run's task is the job's id after the service's key prefix, as its commits are
    for name, run in runs.items():
        assert run["task"].startswith(KEY_PREFIX) and run["task"][len(KEY_PREFIX) :].isdigit()
        kinds = {(e["source"], e["status"]) for e in timeline(stack, run["task"])["events"]}
        assert ("db", "PENDING") in kinds, f"{name}\n{told(stack, run['id'])}"

    # And the warning the worker's helper swallowed is tied to its attempt
    swallowed = findings_of(
        stack, started["django-jobs-swallowed-error"], {"swallowed_error", "expectation_mismatch"}
    )
    assert (swallowed["expected"], swallowed["observed"]) == ("FAILED", "COMPLETED")
    by_kind = {f["kind"]: f for f in swallowed["findings"]}
    assert by_kind["expectation_mismatch"]["cause"] == "committed"
    sentence = by_kind["swallowed_error"]["message"]
    assert "logged WARNING" in sentence and "LLM call failed for job" in sentence, sentence
    assert "committed COMPLETED in transaction" in sentence, sentence
    # (logged through the handler its LOGGING installs, named by the worker's role)
    events = timeline(stack, swallowed["task"])["events"]
    warning = next(e for e in events if e["source"] == "log")
    assert (warning["kind"], warning["body"]["process_role"]) == ("warning", "worker"), warning

    # And the message the fast lane sent inside its transaction came before the row
    early = findings_of(
        stack, started["django-jobs-enqueue-before-commit"], {"enqueue_before_commit"}
    )
    assert (early["verdict"], early["observed"]) == ("fail", "PENDING")
    assert "stuck" not in {f["kind"] for f in early["findings"]}

    # And the status endpoint's cached answers are named stale once COMPLETED had committed
    cached = findings_of(stack, started["django-jobs-stale-cache"], {"stale_read"})
    stale = [f for f in cached["findings"] if f["kind"] == "stale_read"]
    assert {f["cause"] for f in stale} == {"cached_response"}, stale
    assert "answered from its own cache" in stale[0]["message"], stale[0]["message"]
    assert (cached["verdict"], cached["observed"]) == ("pass", "COMPLETED")
    # (the reads it rests on are the cache's hits, each linked to the commit it was filled from)
    served = {r["id"]: r for r in reads_link_to_their_commits(stack, cached)}
    pinned = [served[i] for f in stale for i in f["events"] if i in served]
    assert pinned and all(r["body"]["cached"] for r in pinned), told(stack, cached["id"])
    assert {r["status"] for r in pinned} <= {"PENDING", "RUNNING"}

    # And the clean scenario passes with no finding, once its last events are in
    ok = runs["django-jobs-ok"]
    assert (ok["verdict"], ok["observed"]) == ("pass", "COMPLETED")
    wait_for(
        lambda: maintainer_checked(ok["task"]), 30, what="the maintainer's check of the clean run"
    )
    assert stack.get(f"/api/runs/{ok['id']}")[1]["findings"] == [], told(stack, ok["id"])

    # And every read of every run, savepoint writes and cached answers included, links to
    # the commit whose version it returned
    for run in runs.values():
        reads_link_to_their_commits(stack, run)


def test_the_matrix_meets_every_target_of_the_django_scenarios(
    stack: Stack, django_service: DjangoService
) -> None:
    # When the matrix runs each of them twice
    args = [f"--scenario={name}" for name in sorted(OURS)]
    done = stack.manage(
        "lifecycle", "matrix", *args, "--runs=2", "--clean-runs=2", "--json", timeout=180
    )
    # Then every bug's findings, causes included, are in each of its runs, and the clean
    # scenario has none
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rows = {row["scenario"]: row for row in json.loads(done.stdout)["rows"]}
    assert set(rows) == OURS and all(row["met"] for row in rows.values()), rows


def test_its_own_pytest_report_names_the_job_by_its_prefixed_key(
    stack: Stack, django_service: DjangoService, django_venv: Path
) -> None:
    # When the service runs its own end-to-end test (pytest-django, its settings), with the
    # plugin, showing every local
    env = {
        "JOBS_API_URL": django_service.base_url,
        "JOBS_DATABASE_URL": django_service.database,
        "LIFECYCLE_URL": stack.base_url,
        "LIFECYCLE_TOKEN": stack.token,
    }
    done = service_pytest(
        django_venv, DJANGO_SERVICE, "jobs/tests/test_end_to_end.py", env, "--showlocals"
    )
    # Then it fails, and its report names the job as the inspector knows it, with the
    # permalink and the swallowed error
    out, section, task = failing_report(stack, done, rf"{re.escape(KEY_PREFIX)}\d+")
    assert "expectation_mismatch (committed)" in section, out
    status, page = stack.get(f"/api/tasks/{task}/timeline")
    assert status == 200 and page["expected"] == "FAILED"


class Load(threading.Thread):
    """Jobs submitted one after another, as clients do, until stopped."""

    def __init__(self, service: DjangoService) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.jobs: list[int] = []
        self.refused: list[tuple[int, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set() and len(self.jobs) < 500:
            try:
                status, job = http("POST", f"{self.service.base_url}/jobs", {"mode": "ok"})
            except OSError as exc:
                self.refused.append((0, str(exc)))
            else:
                if status == 201:
                    self.jobs.append(job["id"])
                else:
                    self.refused.append((status, job))
            self.halt.wait(0.05)


def statuses(service: DjangoService, ids: list[int]) -> dict[int, str]:
    with psycopg.connect(service.database) as conn:
        rows = conn.execute("SELECT id, status FROM jobs_job WHERE id = ANY(%s)", [ids])
        return dict(rows.fetchall())


def test_migrations_run_while_jobs_are_worked_fail_no_write_and_stop_no_event(
    stack: Stack, django_service: DjangoService
) -> None:
    # Given jobs created and worked continuously
    load = Load(django_service)
    load.start()
    wait_for(lambda: len(load.jobs) >= 5, 10, what="the first jobs of the load")
    after: dict[str, int] = {}  # migration -> how many jobs had been created before it ran
    try:
        # When the next release's migrations run, one by one, on the captured table:
        # a column added, a column renamed, a column dropped, a column's type changed
        for migration in ("0002", "0003", "0004", "0005"):
            done = django_service.manage("migrate", "jobs", migration, "--no-input")
            assert done.returncode == 0, done.stdout + done.stderr
            after[migration] = len(load.jobs)
            count = after[migration]
            wait_for(lambda c=count: len(load.jobs) >= c + 5, 10, what=f"jobs after {migration}")
    finally:
        load.halt.set()
        load.join(10)

    # Then no write of the application failed: every job was created...
    assert load.refused == [], load.refused[:3]
    # ...and worked to its end by the worker
    finished = wait_for(
        lambda: (
            (s := statuses(django_service, load.jobs))
            and all(v == "COMPLETED" for v in s.values())
            and s
        ),
        30,
        what="every job of the load COMPLETED",
    )
    assert len(finished) == len(load.jobs)
    worker_log = django_service.log("worker")
    assert "has no field" not in worker_log, worker_log[-3000:]

    # And the events kept coming for jobs created after each migration: the insert, the
    # worker's commits and its broker steps
    for migration, before in after.items():
        job = load.jobs[before + 2]
        key = f"{KEY_PREFIX}{job}"
        body = wait_for(
            lambda k=key: (
                (t := timeline(stack, k))
                and {("db", "PENDING"), ("db", "RUNNING"), ("db", "COMPLETED")}
                <= {(e["source"], e["status"]) for e in t["events"]}
                and ("broker", "ack") in {(e["source"], e["kind"]) for e in t["events"]}
                and t
            ),
            30,
            what=f"the events of job {job}, created after migration {migration}",
        )
        insert = next(e for e in body["events"] if e["source"] == "db" and e["kind"] == "insert")
        columns = set(insert["body"]["changed"])
        # And the table's columns as they are now, the added one captured from then on
        assert "priority" in columns
        assert ("notes" in columns, "remarks" in columns) == {
            "0002": (True, False),
            "0003": (False, True),
            "0004": (False, False),
            "0005": (False, False),
        }[migration], (migration, columns)
        assert body["findings"] == [], (migration, body["findings"])

    # And `capture list` says nothing is broken
    listed = stack.manage("lifecycle", "capture", "list")
    line = next(x for x in listed.stdout.splitlines() if "jobs_job" in x)
    assert "BROKEN" not in line and "missing" not in line, line
