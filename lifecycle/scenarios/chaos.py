"""The fault suite: scenarios run while one fault strikes, then every run is audited.

``run_suite`` starts a stack of its own (``lifecycle up`` on a free port, a fresh database
``<database>_chaos``, the namespace ``<namespace>-chaos``), whose PostgreSQL and RabbitMQ
connections go through TCP proxies it controls (``lifecycle.scenarios.faults``). For each fault it
starts a run of a scenario (``slow`` by default) through the JSON API every ``every``
seconds for ``seconds`` seconds; the fault strikes ``strike_after`` seconds in. Then it
waits for every run's verdict and audits each run from the stored events:

- every probe read that was answered has the API's read of it (``api.read`` with the
  probe's client name);
- the message was enqueued once, acked once, and every extra start is RabbitMQ's
  redelivery (``redelivered``) or follows a retry;
- no event is stored twice (same source, kind, time and body);
- the run got its verdict, and it is ``pass`` (the task did complete);
- the checker's findings are true ones: the only findings expected under these faults are
  what a real redelivery (a start RabbitMQ marked ``redelivered``) makes a task do: run
  again, and write over its first run's terminal status; any other is counted as false.

Faults: RabbitMQ down (its proxy refuses and drops every connection for ``outage`` s),
PostgreSQL restarted (the same for the database's proxy, and every backend of the stack's
database terminated), ``kill -9`` of the ingestor, of the worker and of the web process
(``lifecycle up`` restarts them), the live feed's connection terminated, and ``kill-node``:
a second node of the stack's deployment (README: Several nodes) is started beside it, then
every process of the first node, which holds ``follow`` and ``maintain``, is killed with
``kill -9`` at once; the second must hold both within 10 s (``NodeKill``), and the first,
started again, serves the runs once more.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from django.conf import settings

from lifecycle.check.rules import check
from lifecycle.events import EventRecord
from lifecycle.history import ATTEMPT_ENDS
from lifecycle.nodes import deployment, election
from lifecycle.runtime.database import conninfo
from lifecycle.runtime.services import maintenance_conninfo
from lifecycle.scenarios.faults import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("rabbitmq", "postgres", "kill-ingest", "kill-worker", "kill-web", "feed", "kill-node")
TAKEOVER = 10.0  # seconds within which another node must hold the elected roles
# What a real redelivery makes a non-idempotent task do, once RabbitMQ redelivered it: run
# again (duplicate_execution), and write over the first run's terminal status.
REDELIVERY_FINDINGS = {"duplicate_execution", "terminal_overwrite", "forbidden_transition"}


@dataclass
class RunAudit:
    run_id: int
    task_key: str | None
    verdict: str | None
    problems: list[str] = field(default_factory=list)
    probe_reads: int = 0
    api_reads: int = 0
    true_findings: list[str] = field(default_factory=list)


@dataclass
class FaultResult:
    fault: str
    runs: list[RunAudit]
    refused_starts: int  # start requests the stack did not answer (the fault's moment)
    seconds: float
    stack_problems: list[str] = field(default_factory=list)  # the fault's own, not a run's

    @property
    def problems(self) -> list[str]:
        return self.stack_problems + [f"run {r.run_id}: {p}" for r in self.runs for p in r.problems]

    @property
    def passed(self) -> bool:
        return bool(self.runs) and not self.problems


class ChaosStack:
    """``lifecycle up`` on a database and RabbitMQ reached through proxies."""

    def __init__(
        self,
        *,
        database: str | None = None,
        namespace: str | None = None,
        scenario_files: str | None = None,
        proxied: bool = True,
        real: bool = False,
        log: Callable[[str], None] = print,
    ):
        """``proxied``: reach PostgreSQL and RabbitMQ through the fault proxies (the soak
        does not: a proxy in this process would carry the whole stack's traffic).
        ``real``: the ``rabbitmq`` and ``postgres`` faults stop and start the real servers
        of this machine (every client of theirs sees it), instead of the proxies."""
        self.real = real
        proxied = proxied and not real
        self.log = log
        db = settings.DATABASES["default"]
        self.database = database or f"{db['NAME']}_chaos"[:63]
        self.namespace = namespace or f"{settings.LIFECYCLE_NAMESPACE}-chaos"
        self.port = _free_port()
        # The load balancer in front of the stack's web nodes (the first node's, until
        # kill-node sends it to the second): runs are started through it, and the probe
        # sends the lab's requests to it (LAB_BASE_URL), as behind any balancer.
        self.balancer = TcpProxy("127.0.0.1", self.port)
        self.base_url = f"http://127.0.0.1:{self.balancer.port}"
        self.pg_proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
        amqp = urlsplit(settings.AMQP_URL)
        self.amqp_proxy = TcpProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672)
        credentials = quote(db["USER"] or "") + (
            f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
        )
        if proxied:
            pg_at = f"127.0.0.1:{self.pg_proxy.port}"
        else:
            pg_at = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        self.database_url = f"postgres://{credentials}@{pg_at}/{self.database}"
        user = amqp.netloc.rpartition("@")[0]
        self.amqp_url = (
            urlunsplit(amqp._replace(netloc=f"{user}@127.0.0.1:{self.amqp_proxy.port}"))
            if proxied
            else settings.AMQP_URL
        )
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "AMQP_URL": self.amqp_url,
            "LIFECYCLE_NAMESPACE": self.namespace,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "LAB_BASE_URL": self.base_url,
            "LIFECYCLE_LAB": "on",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
        }
        if scenario_files:
            self.env["LIFECYCLE_SCENARIOS"] = scenario_files
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self.pids: dict[str, int] = {}
        self.token = ""
        self.second: subprocess.Popen[str] | None = None  # kill-node's other node
        self._second_starting: Future[None] | None = None
        self.second_port = 0
        self.takeovers: list[float] = []  # kill-node: seconds until the other node held both

    # -- the stack ------------------------------------------------------------------------

    def start(self) -> None:
        with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [self.database],
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            conn.execute(f'CREATE DATABASE "{self.database}"')
        deployment.forget_namespace(self.namespace)  # a new database: a new deployment
        self._launch()
        made = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "lifecycle",
                "token",
                "create",
                "chaos",
                "--role",
                "runner",
            ],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.token = made.stdout.strip().splitlines()[0].strip()

    def _launch(self, *args: str) -> None:
        """``lifecycle up`` of the first node, until its dashboard listens."""
        process = self.process = up_process(self.env, *args)
        ready = threading.Event()

        def pump() -> None:
            assert process.stdout
            for line in process.stdout:
                self.output.append(line)
                found = re.search(r"(?:re)?started (\w+) \(pid (\d+)\)", line)
                if found:
                    self.pids[found[1]] = int(found[2])
                if "Dashboard:" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(90):
            self.stop()
            raise RuntimeError("the chaos stack did not start:\n" + "".join(self.output[-40:]))

    def begin_second_node(self) -> None:
        """``start_second_node`` in the background (while the fault before kill-node runs:
        its runs may be served by either node)."""
        if self._second_starting is None:
            starter = ThreadPoolExecutor(1, thread_name_prefix="chaos-second")
            self._second_starting = starter.submit(self._start_second_node)
            starter.shutdown(wait=False)  # its one thread ends with the start

    def start_second_node(self) -> None:
        """Another node of the same deployment, every role, on a port of its own; once its
        followers stand by."""
        begun, self._second_starting = self._second_starting, None
        if begun is not None:
            begun.result()
        self._start_second_node()

    def _start_second_node(self) -> None:
        if self.second is not None and self.second.poll() is None:
            return
        self.second_port = _free_port()
        self.second = subprocess.Popen(
            [sys.executable, "manage.py", "lifecycle", "up", "--no-migrate"],
            cwd=ROOT,
            env={**self.env, "PORT": str(self.second_port), "LIFECYCLE_NODE": "chaos-second"},
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self._roles_of("chaos-second") is None:
            time.sleep(0.2)  # until its followers stand by (their lock connections exist)
        if self._roles_of("chaos-second") is None:
            raise RuntimeError("the chaos stack's second node did not start")

    def _roles_of(self, node: str) -> set[str] | None:
        """The roles ``node`` holds now (None: it has no lock connection at all yet)."""
        with self.direct() as conn:
            present = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name IN (%s, %s)",
                [f"lifecycle-follow {node}", f"lifecycle-maintain {node}"],
            ).fetchone()
        if not present or present[0] < 2:
            return None
        holders = election.holders(conninfo(dbname=self.database))
        return {role for role, holder in holders.items() if holder.node == node}

    def _kill_node(self) -> None:
        """kill -9 of the first node, every process at once; then it is started again. The
        balancer sends to the second from then on, as a balancer's health check would."""
        assert self.process is not None
        self.balancer.target = ("127.0.0.1", self.second_port)
        pids = [self.process.pid, *descendants(self.process.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        killed = time.monotonic()
        while time.monotonic() - killed < TAKEOVER and self._roles_of("chaos-second") != set(
            election.ROLES
        ):
            time.sleep(0.1)
        took = time.monotonic() - killed
        self.takeovers.append(took if self._roles_of("chaos-second") == set(election.ROLES) else -1)
        self._launch("--no-migrate")

    def stop(self) -> None:
        for process in (self.process, self.second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.pg_proxy.close()
        self.amqp_proxy.close()
        self.balancer.close()

    def _real_outage(self, fault: str, outage: float) -> None:
        """Stop the server itself, wait, start it again (root on this machine)."""
        if fault == "rabbitmq":
            stop, start = ["rabbitmqctl", "stop_app"], ["rabbitmqctl", "start_app"]
        else:
            version = sorted(os.listdir("/etc/postgresql"))[-1]
            ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
            stop, start = [*ctl, "stop", "-m", "fast"], [*ctl, "start"]
        subprocess.run(stop, check=True, capture_output=True, timeout=60)
        try:
            time.sleep(outage)
        finally:
            subprocess.run(start, check=True, capture_output=True, timeout=120)

    def direct(self) -> psycopg.Connection[Any]:
        """A connection to the stack's database that bypasses the proxy (for the audit)."""
        return psycopg.connect(
            conninfo(dbname=self.database, application_name="chaos"), autocommit=True
        )

    def start_run(self, scenario: str) -> bool:
        request = urllib.request.Request(
            f"{self.base_url}/api/scenarios/{scenario}/runs",
            data=b"{}",
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return 200 <= response.status < 300
        except (OSError, urllib.error.HTTPError):
            return False

    # -- the faults -----------------------------------------------------------------------

    def strike(self, fault: str, outage: float) -> None:
        if self.real and fault in ("rabbitmq", "postgres"):
            self._real_outage(fault, outage)
        elif fault == "rabbitmq":
            self.amqp_proxy.cut()
            time.sleep(outage)
            self.amqp_proxy.restore()
        elif fault == "postgres":
            self.pg_proxy.cut()
            with self.direct() as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            time.sleep(outage)
            self.pg_proxy.restore()
        elif fault == "kill-node":
            self._kill_node()
        elif fault.startswith("kill-"):
            name = fault.removeprefix("kill-")
            pid = self.pids[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the child and its own children (Dramatiq's)
            deadline = time.monotonic() + 30
            while self.pids.get(name) == pid and time.monotonic() < deadline:
                time.sleep(0.1)  # until lifecycle up has restarted it
        elif fault == "feed":
            with self.direct() as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = 'lifecycle-feed'"
                )
        else:
            raise ValueError(f"unknown fault {fault!r}; the faults are {', '.join(FAULTS)}")


def up_process(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``manage.py lifecycle up`` started with ``env``, its output (errors with it) on a pipe
    for the caller to read."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "lifecycle", "up", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a node's children are in process groups of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> int:
    row = conn.execute(query, params or None).fetchone()
    return int(row[0]) if row else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- one fault ----------------------------------------------------------------------------


def run_fault(
    stack: ChaosStack,
    fault: str,
    *,
    scenario: str = "slow",
    seconds: float = 12.0,
    every: float = 1.5,
    strike_after: float = 3.0,
    outage: float = 5.0,
    verdict_timeout: float = 90.0,
    settle: float = 3.0,
) -> FaultResult:
    if fault == "kill-node":
        stack.start_second_node()  # before the runs' window: they all see it up
    started = time.monotonic()
    with stack.direct() as conn:
        before = _scalar(conn, "SELECT coalesce(max(id), 0) FROM lifecycle_run")
    refused = 0

    def strike() -> None:
        time.sleep(strike_after)
        stack.strike(fault, outage)

    striker = threading.Thread(target=strike, daemon=True)
    striker.start()
    next_start = time.monotonic()
    while time.monotonic() - started < seconds:
        if not stack.start_run(scenario):
            refused += 1
        next_start += every
        time.sleep(max(0.0, next_start - time.monotonic()))
    striker.join(60)
    deadline = time.monotonic() + verdict_timeout
    while time.monotonic() < deadline:
        with stack.direct() as conn:
            running = _scalar(
                conn,
                "SELECT count(*) FROM lifecycle_run WHERE id > %s AND state = 'running'",
                before,
            )
        if not running:
            break
        time.sleep(0.5)
    audits = _settled_audit(stack, before, settle)
    result = FaultResult(fault, audits, refused, time.monotonic() - started)
    if fault == "kill-node":
        took = stack.takeovers[-1] if stack.takeovers else -1.0
        if took < 0:
            result.stack_problems.append(
                f"the second node did not hold follow and maintain within {TAKEOVER:.0f}s"
            )
        else:
            stack.log(
                f"fault kill-node: the second node held follow and maintain {took:.2f}s after"
            )
    return result


def _settled_audit(stack: ChaosStack, after_id: int, settle: float) -> list[RunAudit]:
    """The audit of the runs after ``after_id`` once their last events have come through
    RabbitMQ: as soon as it finds nothing wrong (within ``settle`` seconds), and again a
    second later, for an event that comes twice."""
    deadline = time.monotonic() + settle
    clean_since: float | None = None
    while True:
        with stack.direct() as conn:
            audits = audit_runs(conn, after_id)
        now = time.monotonic()
        if any(a.problems for a in audits):
            clean_since = None
        elif clean_since is None:
            clean_since = now
        if now >= deadline or (clean_since is not None and now - clean_since >= 1.0):
            return audits
        time.sleep(0.25)


def audit_runs(conn: psycopg.Connection[Any], after_id: int) -> list[RunAudit]:
    runs = conn.execute(
        "SELECT id, task_key, state, verdict, expected, observed, error FROM lifecycle_run"
        " WHERE id > %s ORDER BY id",
        [after_id],
    ).fetchall()
    audits = []
    for run_id, task_key, state, verdict, expected, observed, error in runs:
        audit = RunAudit(run_id, task_key, verdict)
        audits.append(audit)
        if state != "done" or verdict is None:
            audit.problems.append(f"no verdict (state {state})")
            continue
        if error.startswith("abandoned"):
            audit.problems.append(f"abandoned: {error}")
        if task_key is None:
            continue  # the stack could not take the task (its submit was refused): true
        if verdict != "pass":
            audit.problems.append(
                f"verdict {verdict}: expected {expected}, observed {observed}"
                + (f" ({error[:120]})" if error else "")
            )
        rows = conn.execute(
            "SELECT id, source, kind, task_key, status, at::text, received_at::text, txid,"
            " body::text, uuid::text FROM lifecycle_event WHERE task_key = %s ORDER BY id",
            [task_key],
        ).fetchall()
        records = [EventRecord.from_row(r) for r in rows]
        _audit_events(audit, run_id, records, expected)
    return audits


def _audit_events(audit: RunAudit, run_id: int, records: list[EventRecord], expected: str) -> None:
    client = f"probe-run-{run_id}"
    probe_reads = [
        r
        for r in records
        if r.source == "probe" and r.kind == "read" and r.body.get("http_status") == 200
    ]
    api_reads = [r for r in records if r.source == "api" and r.body.get("client") == client]
    audit.probe_reads, audit.api_reads = len(probe_reads), len(api_reads)
    if len(api_reads) < len(probe_reads):
        audit.problems.append(
            f"{len(probe_reads) - len(api_reads)} of {len(probe_reads)} probe reads "
            "have no API read"
        )
    broker = Counter(r.kind for r in records if r.source == "broker")
    starts = [r for r in records if r.source == "broker" and r.kind == "start"]
    redelivered = [s for s in starts if s.body.get("redelivered")]
    if broker["enqueue"] != 1:
        audit.problems.append(f"enqueued {broker['enqueue']} times, not once")
    # An ack the worker sent as its connection died is reported and lost; RabbitMQ then
    # redelivers: one more ack per redelivery is the truth, not a double.
    if not 1 <= broker["ack"] <= 1 + len(redelivered):
        audit.problems.append(f"acked {broker['ack']} times, with {len(redelivered)} redeliveries")
    retries = broker["retry"]
    unexplained = [s for s in starts[1:] if not s.body.get("redelivered")]
    if len(unexplained) > retries:
        audit.problems.append(
            f"{len(starts)} starts, with {retries} retries and {len(redelivered)} redeliveries"
        )
    finishes = Counter(
        (r.body.get("message_id"), r.body.get("attempt"), r.body.get("pid"), r.body.get("thread"))
        for r in records
        if r.source == "broker" and r.kind in ATTEMPT_ENDS
    )
    if any(n > 1 for n in finishes.values()):
        audit.problems.append("an attempt was reported finished twice")
    seen = Counter((r.source, r.kind, r.at, json.dumps(r.body, sort_keys=True)) for r in records)
    doubled = sum(n - 1 for n in seen.values() if n > 1)
    if doubled:
        audit.problems.append(f"{doubled} events stored twice")
    # By the clocks: broker events reach the table after the commits they caused.
    first_redelivery = min((s.at for s in redelivered if s.at is not None), default=None)
    by_id = {r.id: r for r in records}
    for finding in check(records, expected):
        times = [at for i in finding.events if i in by_id and (at := by_id[i].at) is not None]
        caused = (
            first_redelivery is not None
            and finding.kind in REDELIVERY_FINDINGS
            and bool(times)
            and max(times) >= first_redelivery
        )
        if caused:
            audit.true_findings.append(finding.kind)
        else:
            audit.problems.append(f"false finding {finding.kind}: {finding.message}")


# -- the suite ----------------------------------------------------------------------------


@contextlib.contextmanager
def chaos_stack(log: Callable[[str], None] = print, **where: Any) -> Iterator[ChaosStack]:
    """A started ``ChaosStack`` (``where``: its database, namespace, scenario files)."""
    stack = ChaosStack(log=log, **where)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def run_suite(
    faults: list[str] | None = None,
    log: Callable[[str], None] = print,
    where: dict[str, Any] | None = None,
    **options: Any,
) -> list[FaultResult]:
    results = []
    with chaos_stack(log, **(where or {})) as stack:
        log(
            f"chaos stack on {stack.base_url}, database {stack.database}, namespace "
            f"{stack.namespace}"
        )
        faults = faults or list(FAULTS)
        for fault, after in zip(faults, [*faults[1:], None], strict=True):
            if after == "kill-node":
                stack.begin_second_node()  # its start is not kill-node's to wait for
            log(f"fault {fault}: starting runs")
            result = run_fault(stack, fault, **options)
            log(f"fault {fault}: {'ok' if result.passed else 'FAILED'} in {result.seconds:.0f}s")
            results.append(result)
    return results


def table(results: list[FaultResult]) -> str:
    header = (
        "fault",
        "runs",
        "pass",
        "refused",
        "probe reads",
        "API reads",
        "true findings",
        "problems",
        "result",
    )
    rows = [header]
    for r in results:
        rows.append(
            (
                r.fault,
                str(len(r.runs)),
                str(sum(1 for a in r.runs if a.verdict == "pass")),
                str(r.refused_starts + sum(1 for a in r.runs if a.task_key is None)),
                str(sum(a.probe_reads for a in r.runs)),
                str(sum(a.api_reads for a in r.runs)),
                ", ".join(
                    f"{k} ×{n}"
                    for k, n in Counter(k for a in r.runs for k in a.true_findings).items()
                )
                or "-",
                str(len(r.problems)),
                "ok" if r.passed else "FAILED",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        lines.extend(f"  {r.fault}: {p}" for p in r.problems[:20])
    return "\n".join(lines)
