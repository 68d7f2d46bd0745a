"""A firehose: an attached application at 500 tasks a second, with the whole stack up (issue 24).

    python -m bench.firehose [--seconds 60] [--rate 500] [--quick]
    python -m bench --only firehose [--firehose-seconds 60] [--firehose-rate 500] [--quick]

The stack is ``lifecycle up`` (``lifecycle.scenarios.chaos.ChaosStack``, as the soak starts it, with
no proxy and no lab): daphne, ``lifecycle ingest``, ``follow`` and ``maintain``, on an
inspector database and a RabbitMQ namespace of this run's own (``<db>_firehose_<hex>``,
``<ns>-firehose-<hex>``), so that no other stack's follower or maintainer takes part.

The application is ``bench.firehose_app``, attached as README's steps 1 and 2 say: its own
database (``<db>_fh_app_<hex>``) holding the task table, with ``capture install
--database``; a real Dramatiq worker (1 process, 8 threads) with ``LifecycleEvents()``,
whose actor commits the task's row three times (``RUNNING``, progress, ``COMPLETED``),
each in its own transaction; and an API process that sends the messages (its own
``LifecycleEvents()``: the enqueue events) at ``--rate`` for ``--seconds`` and reads each
task five times with ``read_row`` (0, 20, 50, 100 and 250 ms after its send). The rows are
made before the capture is installed, so each task's captured commits are exactly its
three. Per task: enqueue, start, ack, 3 commits and 5 reads, 11 events.

Measured in the same run:

- events expected and stored, by source and kind, counted per task (a task short of one
  is a loss, one over is a double), with the uuids distinct; the ``gap`` events;
- ingest lag (``received_at - at`` of broker and API events) and follower lag
  (``received_at`` against the commit: ``body.committed_at`` where the server records
  commit times, else ``at``, the write's ``clock_timestamp()``), p50 and p99;
- websocket push for one watched task: a long task of the same table, committed
  ``WATCH_RATE`` times a second by a writer process of the bench that notes each
  commit's time (CLOCK_MONOTONIC); one websocket client on ``/ws/tasks/<key>``
  (``bench.dashboard``'s) notes when each fragment arrived;
- ``GET /`` and ``GET /tasks/<key>`` (the task acked last), each every 0.5 s with the
  stack's bearer token, from the start of the load to its end;
- each process's CPU over the load (``/proc``): the stack's, the application's,
  RabbitMQ, and PostgreSQL's backends by database and ``application_name``; and what
  those backends were doing (``pg_stat_activity``; ``pg_locks`` for the lock a
  transaction that sent NOTIFY takes at commit, one such transaction at a time on the
  whole server);
- the application's own pace (sent, read and acked a second; how long its messages
  waited for the worker), so that a load the application could not make is not taken
  for the stack's figure.

The daphne serves reads to anyone who reaches its port (``LIFECYCLE_PUBLIC_READ``, as in
``bench.dashboard``), because the websocket client carries no session; the page GETs are
authenticated by the token all the same. Everything is removed at the end: both databases,
the capture's role, the queues and the exchange.

Targets (issue 24): nothing lost, no ``gap``, lags p99 ≤ 1 s, push p99 ≤ 25 ms, pages p99
≤ 300 ms. A missed target is printed MISSED; only a failed run or lost or doubled events
make ``python -m bench`` exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench import harness
from bench.dashboard import _clients, _percentiles, _system_busy, _system_cpu, _websocket_result
from bench.publisher import cpu_seconds, rabbitmq_pids
from bench.worker_overhead import relay_pids

ROOT = Path(__file__).resolve().parents[1]
SECONDS, RATE = 60.0, 500
QUICK_SECONDS, QUICK_RATE = 10.0, 200
THREADS = 8  # the worker's
READERS = 8  # the API's reading threads
WATCH_RATE = 20  # commits a second of the watched task
PAGE_EVERY = 0.5  # seconds between GETs of each page
WAIT_EVERY = 0.25  # seconds between looks at what PostgreSQL's backends are doing
DRAIN_TIMEOUT = 900.0  # seconds after the load for every event to be stored
DRAIN_STILL = 30.0  # ... unless nothing new arrives for this long
ELSEWHERE = "everything else on the machine"  # in the CPU table: other users' work
TARGET_LAG_S = 1.0
# ``--pin``: the inspector (its processes, their backends, the bench's clients) on this core;
# the application, RabbitMQ and the rest of PostgreSQL on the others: what it holds on a
# machine where it does not share cores with the system it observes.
INSPECTOR_CPU = 0
TARGET_PUSH_P99_MS = 25.0
TARGET_PAGE_P99_MS = 300.0
# Per task: what its lifecycle makes (source, kind) -> how many.
PER_TASK = {
    ("broker", "enqueue"): 1,
    ("broker", "start"): 1,
    ("broker", "ack"): 1,
    ("db", "update"): 3,
    ("api", "read"): 5,
}
# Ingest lag (broker, api) and follower lag (db), over each path and each of its sources.
LAGS_SQL = """
SELECT path, source, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag)
FROM (SELECT CASE WHEN source = 'db' THEN 'follower' ELSE 'ingest' END AS path, source,
             extract(epoch FROM received_at - CASE WHEN source = 'db'
                 THEN coalesce((body->>'committed_at')::timestamptz, at) ELSE at END) AS lag
      FROM lifecycle_event WHERE kind <> 'gap') AS e
GROUP BY GROUPING SETS ((path), (path, source))
ORDER BY path DESC, source NULLS FIRST
"""
# The application's own pace, from its broker events: how long messages waited for the
# worker (enqueue -> start), how long a task ran (start -> ack), and the last ack.
WORKER_SQL = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY wait),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY wait),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY run),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY run),
       extract(epoch FROM max(acked))::float8
FROM (SELECT extract(epoch FROM min(at) FILTER (WHERE kind = 'start')
                                - min(at) FILTER (WHERE kind = 'enqueue')) AS wait,
             extract(epoch FROM max(at) FILTER (WHERE kind = 'ack')
                                - min(at) FILTER (WHERE kind = 'start')) AS run,
             max(at) FILTER (WHERE kind = 'ack') AS acked
      FROM lifecycle_event WHERE source = 'broker' GROUP BY task_key) AS t
"""
# What happened during the load: events stored, tasks sent and acked, reads made.
DURING_SQL = """
SELECT count(*) FILTER (WHERE received_at BETWEEN to_timestamp(%(start)s)
                                              AND to_timestamp(%(end)s)),
       count(*) FILTER (WHERE kind = 'enqueue' AND at BETWEEN to_timestamp(%(start)s)
                                                          AND to_timestamp(%(end)s)),
       count(*) FILTER (WHERE kind = 'ack' AND at BETWEEN to_timestamp(%(start)s)
                                                      AND to_timestamp(%(end)s)),
       count(*) FILTER (WHERE source = 'api' AND at BETWEEN to_timestamp(%(start)s)
                                                        AND to_timestamp(%(end)s))
FROM lifecycle_event
"""
LAST_ACKED_SQL = """
SELECT task_key FROM lifecycle_event
WHERE id > (SELECT max(id) - 20000 FROM lifecycle_event) AND kind = 'ack'
ORDER BY id DESC LIMIT 1
"""
# Each backend of the run's databases, and whether it waits for the lock PostgreSQL takes
# at commit for a transaction that sent NOTIFY (one at a time for the whole server).
BACKENDS_SQL = """
SELECT a.pid, a.datname, a.application_name, a.state, a.wait_event_type, a.wait_event,
       EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted
               AND l.locktype = 'object' AND l.classid = 'pg_database'::regclass
               AND l.objid = 0)
FROM pg_stat_activity a WHERE a.datname = ANY(%s) AND a.pid <> pg_backend_pid()
"""
WATCH_SQL = (
    "UPDATE fh_task SET progress = %s, note = %s WHERE id = %s"
    " RETURNING pg_current_xact_id()::text::bigint"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=SECONDS, help="how long tasks are sent")
    parser.add_argument("--rate", type=int, default=RATE, help="tasks a second")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_SECONDS:g} s at {QUICK_RATE}/s, to try it"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help=f"the inspector on CPU {INSPECTOR_CPU} alone, the application on the others",
    )


# -- the run --------------------------------------------------------------------------------


class Firehose:
    """One run: the stack, the application, the load and the clients, and the clean-up."""

    def __init__(self, seconds: float, rate: int, pinned: bool = False) -> None:
        from django.conf import settings

        self.seconds, self.rate, self.pinned = seconds, rate, pinned
        self.tasks = math.ceil(seconds * rate)
        run = uuid.uuid4().hex[:8]
        name = settings.DATABASES["default"]["NAME"]
        self.database = f"{name}_firehose_{run}"[:63]
        self.app_database = f"{name}_fh_app_{run}"[:63]
        self.namespace = f"{settings.LIFECYCLE_NAMESPACE}-firehose-{run}"
        self.queue = f"{self.namespace}.tasks"
        self.prefix = f"fh-{run}-"
        self.watched = f"fh-{run}-watched"
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-firehose-"))
        self.stack: Any = None
        self.captured = False
        self.logs: list[Any] = []  # the worker's and the API's output files
        self.worker: subprocess.Popen[bytes] | None = None
        self.apis: list[subprocess.Popen[str]] = []
        self.children: list[Any] = []  # multiprocessing processes: clients, writer
        self.ctx = multiprocessing.get_context("spawn")
        self.placement: Placement | None = None  # ``--pin``

    # -- setting up ------------------------------------------------------------------------

    def start(self) -> None:
        from lifecycle.scenarios.chaos import ChaosStack

        print(
            f"firehose: starting the stack (database {self.database}, namespace {self.namespace})",
            flush=True,
        )
        stack = ChaosStack(
            database=self.database,
            namespace=self.namespace,
            proxied=False,
            log=lambda line: None,
        )
        stack.env.update(LIFECYCLE_LAB="off", LIFECYCLE_PUBLIC_READ="true", LOG_LEVEL="WARNING")
        self.stack = stack
        stack.start()
        self._make_application()
        self._start_worker()

    def _placement(
        self,
        client: int,
        writer: int,
        relays: list[int],
        sender: subprocess.Popen[str],
        reader: subprocess.Popen[str],
    ) -> Placement | None:
        """``--pin``: every process of the application on its cores, the inspector's on its
        own; its database backends, which come and go, are placed by the CPU meter."""
        if not self.pinned:
            return None
        from lifecycle.runtime.services import maintenance_conninfo

        placement = self.placement = Placement(postmaster_pid(maintenance_conninfo()))
        inspector = [self.stack.process.pid, os.getpid(), client]
        inspector += harness.descendants(self.stack.process.pid)
        assert self.worker is not None
        application = [*_group(self.worker.pid), *relays, sender.pid, reader.pid, writer]
        placement.place(inspector, placement.inspector)
        postgres = postgres_pids(placement.postmaster)
        placement.place([*application, *rabbitmq_pids(), *postgres], placement.others)
        return placement

    def _inspector(self) -> Any:
        """A connection to the stack's database (the bench's own: its pages, its counts)."""
        import psycopg

        from lifecycle.runtime.database import conninfo

        return psycopg.connect(
            conninfo(dbname=self.database, application_name="firehose-bench"), autocommit=True
        )

    def _app_conninfo(self, application_name: str = "firehose-bench") -> str:
        from lifecycle.runtime.database import conninfo

        return conninfo(dbname=self.app_database, application_name=application_name)

    def _make_application(self) -> None:
        """README step 1: its database, its table (the rows first: their inserts are not
        the run's), the capture; the watched task's row, once the follower copies it."""
        import psycopg
        from psycopg import sql

        from bench.firehose_app import SCHEMA
        from lifecycle.runtime.services import maintenance_conninfo

        with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.app_database)))
        with psycopg.connect(self._app_conninfo(), autocommit=True) as conn:
            conn.execute(SCHEMA)
            with conn.cursor() as cur, cur.copy("COPY fh_task (id) FROM STDIN") as copy:
                for i in range(self.tasks):
                    copy.write_row((f"{self.prefix}{i:06d}",))
        done = self._manage(
            "capture",
            "install",
            "public.fh_task",
            "--key",
            "id",
            "--status",
            "status",
            "--database",
            self._app_conninfo(),
            "--name",
            "firehose-app",
        )
        if done.returncode != 0:
            raise RuntimeError(f"capture install failed:\n{done.stdout}{done.stderr}")
        self.captured = True
        with psycopg.connect(self._app_conninfo(), autocommit=True) as conn:
            conn.execute("INSERT INTO fh_task (id, status) VALUES (%s, 'RUNNING')", [self.watched])
        deadline = time.monotonic() + 60
        while not self._scalar(
            "SELECT count(*) FROM lifecycle_event WHERE task_key = %s", self.watched
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the follower did not copy the watched task's insert in 60 s")
            time.sleep(0.2)

    def _manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "lifecycle", *args],
            cwd=ROOT,
            env=self.stack.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def _app_env(self, role: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DJANGO_SETTINGS_MODULE", "LIFECYCLE_KEY_PREFIX", "LIFECYCLE_TASK_KEY")
        }
        env.update(
            AMQP_URL=self.stack.amqp_url,
            LIFECYCLE_NAMESPACE=self.namespace,
            LIFECYCLE_PROCESS_ROLE=role,
            FIREHOSE_DATABASE=self._app_conninfo(f"firehose-{role}"),
            FIREHOSE_QUEUE=self.queue,
            PYTHONUNBUFFERED="1",
        )
        return env

    def _start_worker(self) -> None:
        log = self.tmp / "worker.log"
        self.logs.append(log.open("wb"))
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "bench.firehose_app"]
            + ["--processes", "1", "--threads", str(THREADS), "--queues", self.queue],
            cwd=ROOT,
            env=self._app_env("worker"),
            stdout=self.logs[-1],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while "Worker process is ready for action" not in log.read_text(errors="replace"):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{_tail(log)}")
            time.sleep(0.1)

    def _start_api(self, role: str) -> subprocess.Popen[str]:
        """The API's ``send`` or ``read`` process, once it says it is ready."""
        env = self._app_env("api")
        env.update(
            FIREHOSE_PREFIX=self.prefix,
            FIREHOSE_TASKS=str(self.tasks),
            FIREHOSE_RATE=str(self.rate),
            FIREHOSE_READERS=str(READERS),
            FIREHOSE_RESULT=str(self.tmp / f"api-{role}.json"),
        )
        log = self.tmp / f"api-{role}.log"
        self.logs.append(log.open("wb"))
        api = subprocess.Popen(
            [sys.executable, "-m", "bench.firehose_app", role],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.logs[-1],
            text=True,
        )
        self.apis.append(api)
        assert api.stdout is not None
        if api.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the API's {role} process did not start:\n{_tail(log)}")
        return api

    def _api_result(self, api: subprocess.Popen[str], role: str) -> dict[str, Any]:
        if api.wait(DRAIN_TIMEOUT) != 0:
            log = self.tmp / f"api-{role}.log"
            raise RuntimeError(f"the API's {role} process failed:\n{_tail(log)}")
        return dict(json.loads((self.tmp / f"api-{role}.json").read_text()))

    # -- the load --------------------------------------------------------------------------

    def measure(self) -> dict[str, Any]:
        from lifecycle.runtime.services import maintenance_conninfo

        assert self.worker is not None
        sender, reader = self._start_api("send"), self._start_api("read")
        # The watched task's websocket client and writer, each a process of its own, so
        # that their clocks are read when things happen (bench.dashboard's way).
        ready, stop, go = self.ctx.Event(), self.ctx.Event(), self.ctx.Event()
        paths = [f"/ws/tasks/{self.watched}"]
        port = int(self.stack.base_url.rsplit(":", 1)[1])
        clients_out, clients_in = self.ctx.Pipe(duplex=False)
        writer_out, writer_in = self.ctx.Pipe(duplex=False)
        clients = self.ctx.Process(
            target=_clients, args=(port, paths, ready, stop, clients_in), daemon=True
        )
        writer = self.ctx.Process(
            target=_watch,
            args=(
                self._app_conninfo("firehose-watched"),
                self.watched,
                self.seconds,
                go,
                writer_in,
            ),
            daemon=True,
        )
        self.children = [clients, writer]
        for child in self.children:
            child.start()
        if not ready.wait(60):
            raise RuntimeError("the websocket client did not get its catch-up in 60 s")
        time.sleep(0.5)

        relays = relay_pids(self.worker.pid)  # started by its first event, in the warm-up
        cpu = CpuMeter(
            {
                "web (daphne)": [self.stack.pids["web"]],
                "ingest": [self.stack.pids["ingest"]],
                "follow": [self.stack.pids["follow"]],
                "maintain": [self.stack.pids["maintain"]],
                "lifecycle up (supervisor)": [self.stack.process.pid],
                "app worker (dramatiq, 8 threads)": [
                    pid for pid in _group(self.worker.pid) if pid not in relays
                ],
                "app worker's relay (lifecycle.client.relay)": relays,
                "app API: sends": [sender.pid],
                f"app API: reads ({READERS} threads)": [reader.pid],
                "bench (pages, ws client, watched writer)": [
                    os.getpid(),
                    clients.pid or 0,
                    writer.pid or 0,
                ],
                "RabbitMQ": rabbitmq_pids(),
            },
            maintenance_conninfo(),
            {self.database: "inspector db", self.app_database: "app db"},
            placed=self._placement(clients.pid or 0, writer.pid or 0, relays, sender, reader),
        )
        pages: dict[str, list[float]] = {"home": [], "task": []}
        page_errors: Counter[str] = Counter()
        window_over = threading.Event()
        began, began_wall = time.monotonic(), time.time()
        pager = threading.Thread(
            target=self._pages, args=(pages, page_errors, window_over), daemon=True
        )
        cpu.start()
        for api in (sender, reader):
            assert api.stdin is not None
            api.stdin.write("go\n")
            api.stdin.flush()
        go.set()
        pager.start()
        print(
            f"firehose: sending {self.tasks:,} tasks at {self.rate}/s for {self.seconds:g} s",
            flush=True,
        )
        assert sender.stdout is not None
        line = sender.stdout.readline().strip()
        window_end, window_end_wall = time.monotonic(), time.time()
        window_over.set()
        shares = cpu.stop()
        window = window_end - began
        if line != "enqueued":
            raise RuntimeError(f"the API stopped: {line!r}\n{_tail(self.tmp / 'api-send.log')}")
        backlog = self._backlog()
        pager.join(60)
        commits: list[tuple[int, int, int, int]] = writer_out.recv()
        sends, reads = self._api_result(sender, "send"), self._api_result(reader, "read")
        sent = {
            **reads,
            "send_seconds": sends["seconds"],
            "read_seconds": reads["seconds"],
            "flushed": sends["flushed"] and reads["flushed"],
            "publisher": {
                k: sends["publisher"].get(k, 0) + v for k, v in reads["publisher"].items()
            },
        }
        print(
            f"firehose: sent in {sent['send_seconds']:.1f} s, the API's reads done in "
            f"{sent['read_seconds']:.1f} s; waiting for every event",
            flush=True,
        )

        expected_total = (
            sent["tasks"] * sum(n for k, n in PER_TASK.items() if k != ("api", "read"))
            + sent["reads"]
            + 1  # the watched task's insert
            + len(commits)
        )
        complete = self._drain(expected_total)
        self._stop_worker()
        self._settle()
        stop.set()
        arrivals: list[list[tuple[int, int, int]]] = clients_out.recv()
        for child in self.children:
            child.join(10)
        result = self._results(sent, commits, arrivals, paths, (began_wall, window_end_wall))
        last_stored = result.pop("last_stored")
        result["worker"]["last_ack"] -= window_end_wall
        result.update(
            seconds=self.seconds,
            rate=self.rate,
            window=window,
            caught_up=last_stored - window_end_wall if complete else None,
            backlog=backlog,
            expected_total=expected_total,
            cpu=shares,
            pages={name: _percentiles([t * 1000 for t in times]) for name, times in pages.items()},
            page_errors=dict(page_errors),
            database=self.database,
            namespace=self.namespace,
        )
        return result

    def _pages(
        self, pages: dict[str, list[float]], errors: Counter[str], over: threading.Event
    ) -> None:
        """GET the home page and the page of the task acked last, every PAGE_EVERY s, with
        the token (a task whose history is whole, or nearly: its reads may follow)."""
        headers = {"Authorization": f"Bearer {self.stack.token}"}
        due = time.monotonic()
        conn = self._inspector()
        while not over.is_set():
            row = conn.execute(LAST_ACKED_SQL).fetchone()
            task = row[0] if row else self.watched
            for name, path in (("home", "/"), ("task", f"/tasks/{task}")):
                request = urllib.request.Request(self.stack.base_url + path, headers=headers)
                start = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        response.read()
                        status = response.status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                except OSError as exc:
                    errors[f"{name}: {type(exc).__name__}"] += 1
                    continue
                if status != 200:
                    errors[f"{name}: HTTP {status}"] += 1
                    continue
                pages[name].append(time.perf_counter() - start)
            due += PAGE_EVERY
            over.wait(max(0.0, due - time.monotonic()))
        conn.close()

    def _backlog(self) -> dict[str, int]:
        """What was still on its way when the load ended: the ingest queue, the outbox."""
        import pika
        import psycopg

        from lifecycle.client import topology

        found = {}
        connection = pika.BlockingConnection(pika.URLParameters(self.stack.amqp_url))
        try:
            declared = connection.channel().queue_declare(
                topology.ingest_queue(self.namespace), passive=True
            )
            found["ingest queue"] = int(declared.method.message_count)
        finally:
            connection.close()
        with psycopg.connect(self._app_conninfo(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM lifecycle_capture.outbox").fetchone()
            found["outbox"] = int(row[0]) if row else 0
        return found

    def _drain(self, expected: int) -> bool:
        """Wait for ``expected`` events in the store; whether they came."""
        last, changed = -1, time.monotonic()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline and time.monotonic() - changed < DRAIN_STILL:
            stored = self._scalar("SELECT count(*) FROM lifecycle_event")
            if stored >= expected:
                return True
            if stored != last:
                last, changed = stored, time.monotonic()
            time.sleep(0.25)
        return False

    def _stop_worker(self) -> None:
        """A graceful stop: the middleware flushes what it still holds."""
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()

    def _settle(self) -> None:
        """Until nothing more arrives (what a graceful stop flushed, a late double)."""
        last, still, deadline = -1, 0.0, time.monotonic() + 30
        while still < 2.0 and time.monotonic() < deadline:
            stored = self._scalar("SELECT count(*) FROM lifecycle_event")
            still = still + 0.25 if stored == last else 0.0
            last = stored
            time.sleep(0.25)

    def _scalar(self, query: str, *params: Any) -> int:
        with self._inspector() as conn:
            row = conn.execute(query, params or None).fetchone()
        return int(row[0]) if row else 0

    # -- what the store holds --------------------------------------------------------------

    def _results(
        self,
        sent: dict[str, Any],
        commits: list[tuple[int, int, int, int]],
        arrivals: list[list[tuple[int, int, int]]],
        paths: list[str],
        window: tuple[float, float],
    ) -> dict[str, Any]:
        with self._inspector() as conn:
            during = conn.execute(DURING_SQL, {"start": window[0], "end": window[1]}).fetchone()
            per_task = conn.execute(
                "SELECT task_key, source, kind, count(*) FROM lifecycle_event GROUP BY 1, 2, 3"
            ).fetchall()
            kinds = conn.execute(
                "SELECT source, kind, count(*), count(DISTINCT uuid) FROM lifecycle_event"
                " GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
            gaps = conn.execute(
                "SELECT count(*), coalesce(sum((body->>'dropped')::bigint), 0)"
                " FROM lifecycle_event WHERE kind = 'gap'"
            ).fetchone()
            lags = conn.execute(LAGS_SQL).fetchall()
            watched_rows = conn.execute(
                "SELECT id, txid, task_key, extract(epoch FROM received_at)::float8"
                " FROM lifecycle_event WHERE task_key = %s AND kind = 'update'",
                [self.watched],
            ).fetchall()
            worker = conn.execute(WORKER_SQL).fetchone()
            last_stored = conn.execute(
                "SELECT extract(epoch FROM max(received_at))::float8 FROM lifecycle_event"
            ).fetchone()
            commit_times = conn.execute(
                "SELECT count(*) FILTER (WHERE body ? 'committed_at') FROM lifecycle_event"
                " WHERE source = 'db'"
            ).fetchone()

        tasks = {f"{self.prefix}{i:06d}" for i in range(sent["tasks"])}
        got: dict[str, Counter[tuple[str, str]]] = {}
        for key, source, kind, n in per_task:
            got.setdefault(key, Counter())[(source, kind)] = n
        lost = doubled = 0
        lost_by: Counter[str] = Counter()
        doubled_by: Counter[str] = Counter()
        other: Counter[str] = Counter()
        for key in tasks:
            have = got.get(key, Counter())
            for what, n in PER_TASK.items():
                short, over = max(0, n - have[what]), max(0, have[what] - n)
                lost, doubled = lost + short, doubled + over
                lost_by[" ".join(what)] += short
                doubled_by[" ".join(what)] += over
            for what, n in have.items():
                if what not in PER_TASK and what[1] != "gap":
                    other[" ".join(what)] += n
        watched = got.get(self.watched, Counter())
        watched_expected = {("db", "insert"): 1, ("db", "update"): len(commits)}
        for what, n in watched_expected.items():
            lost += max(0, n - watched[what])
            doubled += max(0, watched[what] - n)
        stray = sum(sum(c.values()) for key, c in got.items() if key not in tasks | {self.watched})
        expected_by = {" ".join(k): n * sent["tasks"] for k, n in PER_TASK.items()}
        expected_by["api read"] = sent["reads"]
        expected_by["db insert"] = 1
        expected_by["db update"] += len(commits)
        push = _websocket_result(
            [(seq, txid, mono) for seq, txid, mono, _ in commits],
            [(i, txid, key) for i, txid, key, _ in watched_rows],
            [],
            arrivals,
            paths,
            self.seconds,
            WATCH_RATE,
            1.0,
            {},
            0.0,
        )
        push.update(_push_parts(commits, watched_rows, arrivals[0]))
        return {
            "tasks": sent["tasks"],
            "api": sent,
            "kinds": [
                {
                    "what": f"{s} {k}",
                    "stored": n,
                    "uuids": u,
                    "expected": expected_by.get(f"{s} {k}"),
                }
                for s, k, n, u in kinds
            ],
            "expected_by": expected_by,
            "lost": lost,
            "doubled": doubled,
            "lost_by": {k: v for k, v in lost_by.items() if v},
            "doubled_by": {k: v for k, v in doubled_by.items() if v},
            "other": dict(other),
            "stray": stray,
            "gaps": int(gaps[0]) if gaps else 0,
            "gap_dropped": int(gaps[1]) if gaps else 0,
            "lags": [
                {
                    "path": path,
                    "source": source,
                    "n": n,
                    "p50": p50 * 1000,
                    "p99": p99 * 1000,
                    "max": float(top) * 1000,
                }
                for path, source, n, p50, p99, top in lags
            ],
            "commit_times": bool(commit_times and commit_times[0]),
            "last_stored": float(last_stored[0]) if last_stored else 0.0,
            "during": dict(
                zip(("stored", "sent", "acked", "reads"), during or (0, 0, 0, 0), strict=True)
            ),
            "worker": {
                "wait_p50": float(worker[0] or 0) * 1000 if worker else 0.0,
                "wait_p99": float(worker[1] or 0) * 1000 if worker else 0.0,
                "run_p50": float(worker[2] or 0) * 1000 if worker else 0.0,
                "run_p99": float(worker[3] or 0) * 1000 if worker else 0.0,
                "last_ack": float(worker[4] or 0) if worker else 0.0,
            },
            "push": push,
        }

    # -- the clean-up ----------------------------------------------------------------------

    def close(self) -> None:
        try:
            if self.placement is not None:  # RabbitMQ and PostgreSQL get their cores back first
                self.placement.restore()
        finally:
            self._close()

    def _close(self) -> None:
        import psycopg
        from psycopg import sql

        from lifecycle.runtime.services import maintenance_conninfo

        for child in self.children:
            if child.is_alive():
                child.kill()
        for api in self.apis:
            if api.poll() is None:
                api.kill()
                api.wait()
        if self.worker is not None and self.worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
        try:
            if self.captured:
                done = self._manage(
                    "capture", "remove", "--all", "--database", self._app_conninfo()
                )
                if done.returncode != 0:
                    print(f"firehose: capture remove failed: {done.stderr[-500:]}", flush=True)
        finally:
            if self.stack is not None:
                self.stack.stop()
            with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
                for database in (self.database, self.app_database):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(database)
                        )
                    )
                conn.execute(
                    sql.SQL("DROP ROLE IF EXISTS {}").format(
                        sql.Identifier(f"{self.app_database}_lifecycle_capture"[:63])
                    )
                )
            self._delete_rabbitmq()
            for log in self.logs:
                log.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _delete_rabbitmq(self) -> None:
        import pika

        from lifecycle.client import config, topology

        queues = [
            topology.ingest_queue(self.namespace),
            topology.dead_queue(self.namespace),
            f"{self.namespace}.lab",
            f"{self.namespace}.deployment",  # the stack's mark (lifecycle/nodes/deployment.py)
            self.queue,
            f"{self.queue}.DQ",  # Dramatiq's delay and dead-letter queues
            f"{self.queue}.XQ",
        ]
        url = self.stack.amqp_url if self.stack is not None else config.amqp_url()
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = connection.channel()
            for queue in queues:
                try:
                    channel.queue_delete(queue)
                except Exception:  # never declared: the channel is closed, open another
                    channel = connection.channel()
            channel.exchange_delete(config.exchange_name(self.namespace))
        finally:
            connection.close()


def _watch(dsn: str, key: str, seconds: float, go: Any, out: Any) -> None:
    """The watched task's writer (a process): WATCH_RATE commits a second, each noted
    (sequence, txid, CLOCK_MONOTONIC ns, wall-clock ns) right after it returned."""
    import psycopg

    commits: list[tuple[int, int, int, int]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")
        go.wait()
        for seq in harness.paced(WATCH_RATE, seconds):
            row = conn.execute(WATCH_SQL, (seq, f"bench-{seq}", key)).fetchone()
            committed, wall = time.monotonic_ns(), time.time_ns()
            assert row is not None
            commits.append((seq, row[0], committed, wall))
    out.send(commits)


def _push_parts(
    commits: list[tuple[int, int, int, int]],
    rows: list[tuple[int, int, str, float]],
    arrivals: list[tuple[int, int, int]],
) -> dict[str, Any]:
    """The push split at the store: commit -> stored (the follower, by the wall clock the
    row's received_at is on) and stored -> fragment (the rest: NOTIFY, daphne, the socket),
    each commit's wall-clock time tying its two clocks together."""
    by_txid = {txid: (mono, wall) for _, txid, mono, wall in commits}
    first: dict[int, int] = {}
    for event_id, at, _ in arrivals:
        first.setdefault(event_id, at)
    stored_ms, fanout_ms = [], []
    for event_id, txid, _, received in rows:
        if txid not in by_txid or event_id not in first:
            continue
        mono, wall = by_txid[txid]
        to_store = received * 1000 - wall / 1e6
        stored_ms.append(to_store)
        fanout_ms.append((first[event_id] - mono) / 1e6 - to_store)
    return {"to_store": _percentiles(stored_ms), "to_fragment": _percentiles(fanout_ms)}


def postgres_pids(postmaster: int) -> list[int]:
    """A PostgreSQL server's processes: its postmaster and what it started (its helpers and
    backends), not another cluster's on the same machine."""
    return [postmaster, *harness.descendants(postmaster)]


def postmaster_pid(conninfo: str) -> int:
    """The postmaster of the server ``conninfo`` reaches (on this machine): its backend's
    parent."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        backend = conn.info.backend_pid
    stat = Path(f"/proc/{backend}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


class Placement(harness.Affinities):
    """``--pin``: which core each process runs on (``harness.Affinities``). A process
    started later inherits its parent's place, so the postmaster's new backends start on
    the application's cores until the CPU meter moves the inspector's (``backend``, at
    most ``WAIT_EVERY`` s later: a connection shorter than that stays where it began).
    ``restore`` gives each thread moved what it had, the postmaster first, then whatever
    the postmaster started meanwhile what the postmaster had; after it, nothing is placed."""

    def __init__(self, postmaster: int) -> None:
        super().__init__()
        cpus = set(range(os.cpu_count() or 1))
        self.postmaster = postmaster
        self.inspector = {INSPECTOR_CPU}
        self.others = (cpus - self.inspector) or cpus
        self.backends: set[int] = set()  # the inspector's, placed already

    def backend(self, pid: int, database: str, application: str) -> None:
        """A backend seen by the CPU meter: the inspector's database's, or the follower's
        on the application's database, go to the inspector's core."""
        if pid in self.backends:
            return
        if database == "inspector db" or application.startswith("lifecycle-"):
            self.backends.add(pid)
            self.place([pid], self.inspector)

    def restore(self, first: list[int] | tuple[int, ...] = ()) -> bool:
        # The postmaster first, so that what it starts from now on starts where it did.
        if not super().restore([*first, *harness.threads(self.postmaster)]):
            return False
        home = self.saved.get(self.postmaster)
        if home is not None:  # its children born meanwhile inherited the pinned place
            with self.lock:
                for pid in postgres_pids(self.postmaster):
                    for tid in harness.threads(pid):
                        if tid not in self.saved:
                            with contextlib.suppress(OSError):
                                os.sched_setaffinity(tid, home)
        return True


def _group(pid: int) -> list[int]:
    """A process and every process of its group (Dramatiq's worker processes)."""
    found = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) == pid:
                    found.append(int(entry))
    return found


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class CpuMeter:
    """CPU seconds of named processes over a window, and of PostgreSQL's processes: backends
    come and go, so they are sampled every second, each named by its database and its
    ``application_name``; and what those backends were doing, sampled every
    ``WAIT_EVERY`` s (``pg_stat_activity``, and ``pg_locks`` for the NOTIFY lock)."""

    def __init__(
        self,
        named: dict[str, list[int]],
        conninfo: str,
        databases: dict[str, str],
        placed: Placement | None = None,
    ):
        self.named, self.conninfo, self.databases = named, conninfo, databases
        self.placed = placed
        self.before: dict[str, float] = {}
        self.first: dict[int, float] = {}  # postgres pid -> CPU seconds when first seen
        self.last: dict[int, float] = {}
        self.label: dict[int, str] = {}
        self.doing: dict[str, Counter[str]] = {}  # label -> what its backends were doing
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._sample_loop, daemon=True)
        self.conn: Any = None  # to pg_stat_activity, used by one thread at a time

    def start(self) -> None:
        self.started = time.monotonic()
        self.system = _system_cpu()
        self.before = {name: cpu_seconds(pids) for name, pids in self.named.items()}
        self._sample_cpu(first=True)
        self.thread.start()

    def stop(self) -> dict[str, Any]:
        self.halt.set()
        self.thread.join(10)
        self._sample_cpu(first=False)
        if self.conn is not None:
            self.conn.close()
        seconds = time.monotonic() - self.started
        used = {name: cpu_seconds(pids) - self.before[name] for name, pids in self.named.items()}
        postgres: dict[str, float] = {}
        for pid, last in self.last.items():
            label = self.label.get(pid, "PostgreSQL: other processes")
            postgres[label] = postgres.get(label, 0.0) + last - self.first[pid]
        for label, value in sorted(postgres.items(), key=lambda x: -x[1]):
            used[label] = value
        machine = _system_busy(self.system, _system_cpu())
        cpus = os.cpu_count() or 1
        # Whatever else ran (other users' work): the machine's busy time less the above.
        used[ELSEWHERE] = max(0.0, machine * cpus * seconds - sum(used.values()))
        return {
            "seconds": seconds,
            "used": used,
            "machine": machine,
            "cpus": cpus,
            "doing": {label: dict(found) for label, found in self.doing.items()},
        }

    def _sample_loop(self) -> None:
        n = 0
        while not self.halt.wait(WAIT_EVERY):
            n += 1
            self._sample_backends()
            if n % round(1 / WAIT_EVERY) == 0:
                self._sample_cpu(first=False)

    def _sample_backends(self) -> dict[int, str]:
        """Each backend of the two databases: its label; what it does, counted."""
        import psycopg

        names: dict[int, str] = {}
        with contextlib.suppress(psycopg.Error):
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(
                    self.conninfo, autocommit=True, application_name="firehose-cpu"
                )
            rows = self.conn.execute(BACKENDS_SQL, [list(self.databases)]).fetchall()
            for pid, database, application, state, wait_type, wait, notify in rows:
                label = f"PostgreSQL: {self.databases[database]}, {application or '(no name)'}"
                names[pid] = self.label[pid] = label
                if self.placed is not None:
                    self.placed.backend(pid, self.databases[database], application or "")
                if notify:
                    doing = "waiting for the NOTIFY lock"
                elif state == "active":
                    doing = f"{wait_type}: {wait}" if wait_type else "running (or runnable)"
                else:
                    doing = str(state)
                self.doing.setdefault(label, Counter())[doing] += 1
        return names

    def _sample_cpu(self, first: bool) -> None:
        names = self._sample_backends() if first else {}
        for pid, label in names.items():
            self.label[pid] = label
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                    continue
            except OSError:
                continue
            seconds = cpu_seconds([pid])
            if pid not in self.first:
                self.first[pid] = seconds if first else 0.0  # born in the window
            self.last[pid] = seconds


def bench_firehose(
    seconds: float = SECONDS, rate: int = RATE, pinned: bool = False
) -> dict[str, Any]:
    """Run the firehose; print and return its figures."""
    run = Firehose(seconds, rate, pinned)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # A SIGTERM cleans up as Ctrl-C does: databases, role, queues.
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run.start()
        result = run.measure()
    finally:
        try:
            run.close()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    result["pinned"] = pinned
    result["ok"] = result["lost"] == 0 and result["doubled"] == 0 and result["stray"] == 0
    result["ok"] = result["ok"] and result["push"]["lost"] == 0
    result["ok"] = result["ok"] and result["push"]["duplicates"] == 0
    print(format_firehose(result), flush=True)
    return result


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- the report -----------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def lag_p99(result: dict[str, Any], path: str) -> float:
    """The p99 lag (ms) of ``ingest`` or ``follower``, over all its sources."""
    return next((r["p99"] for r in result["lags"] if r["path"] == path and not r["source"]), 0.0)


def format_firehose(r: dict[str, Any]) -> str:
    api, push = r["api"], r["push"]
    ws = push["websocket"]
    sent_rate = api["tasks"] / api["send_seconds"] if api["send_seconds"] else 0.0
    lines = [
        f"firehose: {r['rate']} tasks/s asked for {r['seconds']:g} s: {api['tasks']:,} tasks sent "
        f"in {api['send_seconds']:.1f} s ({sent_rate:.0f}/s), {api['reads']:,} API reads "
        f"({api['read_errors']} failed; the last done {api['read_seconds']:.1f} s after the "
        f"first send; late on their schedule p50 {api['read_late_p50'] * 1000:.0f} ms, p99 "
        f"{api['read_late_p99'] * 1000:.0f} ms)",
        f"  stack: lifecycle up (web, ingest, follow, maintain) on {r['database']}, namespace "
        f"{r['namespace']}; the application: a worker (1 process, {THREADS} threads), an API "
        f"(a sending process, a reading one with {READERS} threads), the watched task's writer"
        f" ({WATCH_RATE} commits/s)",
        *(
            [
                f"  pinned (--pin): the inspector (its processes, their PostgreSQL backends, the"
                f" bench's pages and websocket client) on CPU {INSPECTOR_CPU} alone; the"
                " application, RabbitMQ and the rest of PostgreSQL on the others"
            ]
            if r.get("pinned")
            else []
        ),
        "",
        f"  {'events (per task: 1 enqueue, start, ack; 3 updates; 5 reads)':<62}"
        f"{'expected':>10}{'stored':>10}{'uuids':>10}",
    ]
    for row in r["kinds"]:
        expected = row["expected"]
        lines.append(
            f"    {row['what']:<60}{expected if expected is not None else '-':>10}"
            f"{row['stored']:>10}{row['uuids']:>10}"
        )
    stored = sum(row["stored"] for row in r["kinds"])
    lines.append(f"    {'all':<60}{r['expected_total']:>10}{stored:>10}")
    met = r["lost"] == 0 and r["doubled"] == 0 and r["stray"] == 0
    lines.append(
        f"  lost {r['lost']}{' ' + str(r['lost_by']) if r['lost_by'] else ''}, doubled "
        f"{r['doubled']}{' ' + str(r['doubled_by']) if r['doubled_by'] else ''}, on no task of "
        f"the run {r['stray']}"
        + (f", unexpected kinds {r['other']}" if r["other"] else "")
        + f"; target nothing lost or doubled: {_verdict(met)}"
    )
    lines.append(
        f"  gap events: {r['gaps']} (telling of {r['gap_dropped']} dropped); target none: "
        f"{_verdict(r['gaps'] == 0)}"
    )
    caught = (
        f"the last event stored {r['caught_up']:.1f} s after the last send"
        if r["caught_up"] is not None
        else f"NOT every event stored within {DRAIN_TIMEOUT:g} s after the last send"
    )
    backlog = ", ".join(f"{k} {v:,}" for k, v in r["backlog"].items())
    lines.append(f"  {caught} (still on the way at that moment: {backlog})")
    d, seconds = r["during"], r["window"] or 1.0
    asked = r["rate"] * sum(PER_TASK.values()) + WATCH_RATE
    lines.append(
        f"  during the load ({seconds:.1f} s) the store took {d['stored']:,} events "
        f"({d['stored'] / seconds:,.0f}/s; the asked rate makes {asked:,}/s): the API sent "
        f"{d['sent'] / seconds:,.0f} tasks/s and read {d['reads'] / seconds:,.0f}/s, the worker "
        f"acked {d['acked'] / seconds:,.0f}/s"
    )
    w = r["worker"]
    lines.append(
        f"  the application's worker: messages waited (enqueue -> start) p50 {w['wait_p50']:.0f},"
        f" p99 {w['wait_p99']:.0f} ms; tasks ran (start -> ack) p50 {w['run_p50']:.0f}, p99 "
        f"{w['run_p99']:.0f} ms; its last ack {w['last_ack']:.1f} s after the last send"
    )
    publisher = ", ".join(f"{k} {v}" for k, v in api["publisher"].items())
    lines.append(
        f"  the API's publishers (its two processes) at their end: {publisher} (flushed: "
        f"{api['flushed']})"
    )
    lines += [
        "",
        f"  {'lag (received_at - at; db: - commit)':<40}{'events':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>10}  target p99 ≤ {TARGET_LAG_S * 1000:g} ms",
    ]
    for row in r["lags"]:
        name = f"  {row['source']}" if row["source"] else row["path"]
        verdict = "" if row["source"] else _verdict(row["p99"] <= TARGET_LAG_S * 1000)
        lines.append(
            f"    {name:<38}{row['n']:>9}{row['p50']:>9.1f}{row['p99']:>9.1f}{row['max']:>10.1f}"
            f"  {verdict}"
        )
    if not r["commit_times"]:
        lines.append(
            "    (the follower's lag is from the write's clock_timestamp(), a little before its"
            " commit: the server has track_commit_timestamp off)"
        )
    pages = r["pages"]
    lines += [
        "",
        f"  websocket push, commit -> fragment, watched task ({ws['n']} of {push['expected']} "
        f"commits): p50 {ws['p50']:.1f}, p95 {ws['p95']:.1f}, p99 {ws['p99']:.1f}, max "
        f"{ws['max']:.1f} ms; lost {push['lost']}, doubled {push['duplicates']}; target p99 ≤ "
        f"{TARGET_PUSH_P99_MS:g} ms: {_verdict(ws['p99'] <= TARGET_PUSH_P99_MS)}",
        f"    of it: commit -> stored (the follower) p50 {push['to_store']['p50']:.1f}, p99 "
        f"{push['to_store']['p99']:.1f} ms; stored -> fragment (NOTIFY, daphne) p50 "
        f"{push['to_fragment']['p50']:.1f}, p99 {push['to_fragment']['p99']:.1f} ms",
    ]
    for name, label in (("home", "GET /"), ("task", "GET /tasks/<key>")):
        p = pages[name]
        lines.append(
            f"  {label:<17} ({p['n']} while it ran, bearer token): p50 {p['p50']:.0f}, p99 "
            f"{p['p99']:.0f}, max {p['max']:.0f} ms; target p99 ≤ {TARGET_PAGE_P99_MS:g} ms: "
            f"{_verdict(p['n'] > 0 and p['p99'] <= TARGET_PAGE_P99_MS)}"
        )
    if r["page_errors"]:
        lines.append(f"  page errors: {r['page_errors']}")
    cpu = r["cpu"]
    total = sum(cpu["used"].values()) or 1.0
    lines += [
        "",
        f"  CPU over the load ({cpu['seconds']:.1f} s; the machine {cpu['machine']:.0%} busy "
        f"over its {cpu['cpus']} CPUs)",
        f"    {'process':<52}{'CPU s':>8}{'of a core':>11}{'of all used':>13}",
    ]
    for name, used in sorted(cpu["used"].items(), key=lambda x: -x[1]):
        if used < 0.005 * cpu["seconds"] and name.startswith("PostgreSQL"):
            continue  # idle backends
        lines.append(
            f"    {name[:52]:<52}{used:>8.1f}{used / cpu['seconds']:>11.0%}{used / total:>13.0%}"
        )
    lines.append(
        f"  what PostgreSQL's backends were doing (sampled every {WAIT_EVERY:g} s; a share is of"
        " the samples, the count is the backends at a time)"
    )
    samples = cpu["seconds"] / WAIT_EVERY
    for label, doing in sorted(cpu["doing"].items(), key=lambda x: -sum(x[1].values())):
        seen = sum(doing.values())
        if seen < samples / 2:
            continue  # a backend that was not there most of the time
        top = sorted(doing.items(), key=lambda x: -x[1])[:3]
        shares = ", ".join(f"{what} {n / seen:.0%}" for what, n in top)
        lines.append(f"    {label.removeprefix('PostgreSQL: ')} ({seen / samples:.1f}): {shares}")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    options = parser.parse_args()
    if options.quick:
        outcome = bench_firehose(QUICK_SECONDS, QUICK_RATE, options.pin)
    else:
        outcome = bench_firehose(options.seconds, options.rate, options.pin)
    raise SystemExit(0 if outcome["ok"] else 1)
