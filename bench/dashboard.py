"""Benchmark the dashboard: commit-to-websocket latency through daphne, and task page render.

(a) Websocket latency. A real daphne (``python -m daphne ... dashboard.asgi:application``)
serves websocket clients, each on ``/ws/tasks/<key>`` of one of a few ``lab_task`` rows
the benchmark inserts. A writer process commits single-row ``UPDATE``s of those rows
round-robin at a steady rate (``error = 'bench-<seq>'``, which the event card's title
shows), noting ``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process on
Linux) right after each commit returns, with the transaction id the ``UPDATE`` returned.
The clients (another process, asyncio, a minimal RFC 6455 client) note when each fragment
arrived and which event ids it carries; a bare psycopg ``LISTEN lifecycle_events`` (a third
process) notes when each notification arrived. Event ids map to commits through their
``txid``. The daphne process's CPU is read from ``/proc`` over the writing window.

(b) Render. A task with 5,000 realistic events (commits with transaction ids, API reads
with xmin and snapshot, probe reads, broker steps, warnings) inserted directly; the median
time of ``django.test.Client().get('/tasks/<key>')`` and of each step of the view (query,
timeline build, checker, render), beside the same page with 50 events.

    DATABASE_URL=postgres://... python -m bench.dashboard [--seconds 10]

Everything it creates is removed at the end: the lab rows, their events, their checks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import harness
from lifecycle.events import NOTIFY_CHANNEL as CHANNEL  # imports no Django
from lifecycle.history import XID_WRAP

TARGET_WS_P50_MS = 5.0
TARGET_WS_P99_MS = 25.0
TARGET_RENDER_MS = 150.0
ROOT = Path(__file__).resolve().parents[2]

UPDATE_SQL = (
    "UPDATE lab_task SET error = %s WHERE id = %s RETURNING pg_current_xact_id()::text::bigint"
)
EVENT_ITEM = re.compile(r'<li class="ev[^>]*?data-event-id="(\d+)"')
SEQUENCE = re.compile(r"bench-(\d+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to write")
    parser.add_argument("--rate", type=int, default=500, help="commits per second")
    parser.add_argument("--clients", type=int, default=50, help="websocket clients")
    parser.add_argument(
        "--clients-per-task",
        type=int,
        action="append",
        help="clients watching each task (repeat for variants; default 1, then 5)",
    )
    parser.add_argument("--events", type=int, default=5000, help="events of the rendered task")
    parser.add_argument("--skip-websocket", action="store_true")
    parser.add_argument("--skip-render", action="store_true")


def handle(command: Any, options: dict[str, Any]) -> int:
    ok = True
    if not options["skip_websocket"]:
        for per_task in options["clients_per_task"] or [1, 5]:
            result = bench_websocket(
                options["seconds"], options["rate"], options["clients"], per_task
            )
            ok &= result["lost"] == 0 and result["duplicates"] == 0
    if not options["skip_render"]:
        bench_render(options["events"])
    return 0 if ok else 1


def _bench_user() -> Any:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(
        username="bench-reader", defaults={"is_superuser": True}
    )
    return user


# -- (a) websocket latency ----------------------------------------------------------------------


def bench_websocket(
    seconds: float, rate: int, clients: int = 50, clients_per_task: int = 1, drain: float = 2.0
) -> dict[str, Any]:
    """Commit ``rate`` UPDATEs a second for ``seconds``; return and print the latencies."""
    import multiprocessing

    import psycopg

    from lifecycle.feed.listener import dsn_from_settings

    dsn = dsn_from_settings("lifecycle-bench")
    tasks = max(1, clients // clients_per_task)
    keys = [str(uuid.uuid4()) for _ in range(tasks)]
    paths = [f"/ws/tasks/{keys[i % tasks]}" for i in range(clients)]
    ctx = multiprocessing.get_context("spawn")
    daphne: subprocess.Popen[bytes] | None = None
    procs: list[Any] = []
    log = tempfile.TemporaryFile()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO lab_task (id, config, status, error, executions, created_at,"
                    " updated_at) VALUES (%s, '{\"bench\": \"dashboard\"}', 'PENDING', '', 0,"
                    " now(), now())",
                    [(k,) for k in keys],
                )
        port = _free_port()
        daphne = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-v",
                "0",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "dashboard.asgi:application",
            ],
            cwd=ROOT,
            # The clients carry no session: reading is open for this server only, and
            # their one address, which counts as their session, may hold them all.
            env={
                **os.environ,
                "LIFECYCLE_PROCESS_ROLE": "bench-web",
                "LIFECYCLE_PUBLIC_READ": "true",
                "LIFECYCLE_WS_PER_SESSION": "100000",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if not _wait_for_port(port, 30, daphne):
            raise RuntimeError(f"daphne did not listen on port {port}:\n{_tail(log)}")

        listener_ready, clients_ready, go, stop = (ctx.Event() for _ in range(4))
        listener_out, listener_in = ctx.Pipe(duplex=False)
        clients_out, clients_in = ctx.Pipe(duplex=False)
        writer_out, writer_in = ctx.Pipe(duplex=False)
        listener = ctx.Process(
            target=_listen, args=(dsn, listener_ready, stop, listener_in), daemon=True
        )
        client_proc = ctx.Process(
            target=_clients, args=(port, paths, clients_ready, stop, clients_in), daemon=True
        )
        writer = ctx.Process(
            target=_write, args=(dsn, keys, rate, seconds, go, writer_in), daemon=True
        )
        procs = [listener, client_proc, writer]
        for proc in procs:
            proc.start()
        for name, event in (("the LISTEN process", listener_ready), ("the clients", clients_ready)):
            if not event.wait(60):
                raise RuntimeError(f"{name} did not get ready in 60 s:\n{_tail(log)}")
        time.sleep(0.5)  # let the catch-up pushes settle

        watched: dict[str, int] = {
            "daphne": daphne.pid,
            "clients": client_proc.pid or 0,
            "LISTEN": listener.pid or 0,
        }
        cpu_before = {name: _cpu_seconds(pid) for name, pid in watched.items()}
        system_before = _system_cpu()
        started = time.monotonic()
        go.set()
        commits: list[tuple[int, int, int]] = writer_out.recv()  # (seq, txid, committed ns)
        elapsed = time.monotonic() - started
        cpu = {
            name: (_cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in watched.items()
        }
        system = _system_busy(system_before, _system_cpu())
        time.sleep(drain)
        stop.set()
        heard: list[tuple[int, int]] = listener_out.recv()  # (event id, arrival ns)
        arrivals: list[list[tuple[int, int, int]]] = clients_out.recv()  # per client
        for proc in procs:
            proc.join(10)

        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT id, txid, task_key FROM lifecycle_event"
                " WHERE task_key = ANY(%s) AND kind = 'update'",
                [keys],
            ).fetchall()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        if daphne is not None:
            harness.stop(daphne)
        _clean(dsn, keys)

    result = _websocket_result(
        commits, rows, heard, arrivals, paths, seconds, rate, elapsed, cpu, system
    )
    result["clients_per_task"] = clients_per_task
    result["tasks"] = tasks
    print(format_websocket(result), flush=True)
    return result


def _websocket_result(
    commits: list[tuple[int, int, int]],
    rows: list[tuple[int, int, str]],
    heard: list[tuple[int, int]],
    arrivals: list[list[tuple[int, int, int]]],
    paths: list[str],
    seconds: float,
    rate: int,
    elapsed: float,
    cpu: dict[str, float],
    system: float,
) -> dict[str, Any]:
    by_txid = {txid: (seq, at) for seq, txid, at in commits}
    committed: dict[int, tuple[int, int]] = {}  # event id -> (seq, commit ns)
    task_of: dict[int, str] = {}
    for event_id, txid, key in rows:
        if txid in by_txid:
            committed[event_id] = by_txid[txid]
            task_of[event_id] = key

    raw: dict[int, int] = {}
    for event_id, at in heard:
        raw.setdefault(event_id, at)
    raw_ms = [(raw[i] - at) / 1e6 for i, (_, at) in committed.items() if i in raw]

    ws_ms: list[float] = []
    expected = duplicates = carried = 0
    for path, got in zip(paths, arrivals, strict=True):
        key = path.rsplit("/", 1)[-1]
        first: dict[int, tuple[int, int]] = {}
        counts: Counter[int] = Counter()
        for event_id, at, seq in got:
            counts[event_id] += 1
            first.setdefault(event_id, (at, seq))
        duplicates += sum(n - 1 for n in counts.values() if n > 1)
        for event_id, (seq, at) in committed.items():
            if task_of[event_id] != key:
                continue
            expected += 1
            if event_id in first:
                arrived, shown = first[event_id]
                ws_ms.append((arrived - at) / 1e6)
                carried += shown == seq
    return {
        "seconds": seconds,
        "rate": rate,
        "clients": len(paths),
        "commits": len(commits),
        "achieved_rate": len(commits) / elapsed if elapsed else 0.0,
        "events": len(committed),
        "websocket": _percentiles(ws_ms),
        "raw": _percentiles(raw_ms),
        "expected": expected,
        "lost": expected - len(ws_ms),
        "raw_lost": len(committed) - len(raw_ms),
        "duplicates": duplicates,
        "carried": carried,
        "cpu": cpu,
        "system_busy": system,
    }


def _percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    if not ms:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}

    def at(q: float) -> float:
        return ms[min(len(ms) - 1, int(len(ms) * q))]

    return {"n": len(ms), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": ms[-1]}


def format_websocket(r: dict[str, Any]) -> str:
    ws, raw = r["websocket"], r["raw"]
    ok = ws["p50"] <= TARGET_WS_P50_MS and ws["p99"] <= TARGET_WS_P99_MS
    cpu = ", ".join(f"{name} {share:.0%}" for name, share in r["cpu"].items())
    lines = [
        f"websocket latency: {r['clients']} clients on {r['tasks']} tasks "
        f"({r['clients_per_task']} per task), {r['commits']} commits in {r['seconds']:g} s "
        f"({r['rate']}/s asked, {r['achieved_rate']:.0f}/s achieved)",
        f"  {'commit ->':<22}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'received':>16}",
        f"  {'raw psycopg LISTEN':<22}{raw['p50']:>9.2f}{raw['p95']:>9.2f}{raw['p99']:>9.2f}"
        f"{raw['max']:>9.2f}{raw['n']:>9}/{r['events']}",
        f"  {'websocket fragment':<22}{ws['p50']:>9.2f}{ws['p95']:>9.2f}{ws['p99']:>9.2f}"
        f"{ws['max']:>9.2f}{ws['n']:>9}/{r['expected']}",
        f"  lost {r['lost']}, doubled {r['duplicates']}, fragments showing their commit's "
        f"sequence number {r['carried']}/{ws['n']}",
        f"  CPU over the writing window: {cpu}; whole machine {r['system_busy']:.0%} busy "
        f"({os.cpu_count()} CPUs)",
        f"  target p50 ≤ {TARGET_WS_P50_MS:g} ms and p99 ≤ {TARGET_WS_P99_MS:g} ms: "
        f"{'met' if ok else 'MISSED'}",
    ]
    return "\n".join(lines)


def _write(dsn: str, keys: list[str], rate: int, seconds: float, go: Any, out: Any) -> None:
    """The writer process: steady single-row UPDATEs, each its own transaction."""
    import psycopg

    commits: list[tuple[int, int, int]] = []
    with psycopg.connect(dsn, autocommit=True, application_name="lifecycle-bench") as conn:
        conn.execute(UPDATE_SQL, ("bench-warmup", keys[0])).fetchone()  # prepare, warm
        go.wait()
        # fallen 50 ms behind: do not burst to catch up, keep the pace
        for seq in harness.paced(rate, seconds, max_behind_ns=50_000_000):
            row = conn.execute(UPDATE_SQL, (f"bench-{seq}", keys[seq % len(keys)])).fetchone()
            committed = time.monotonic_ns()
            assert row is not None
            commits.append((seq, row[0], committed))
    out.send(commits)


def _listen(dsn: str, ready: Any, stop: Any, out: Any) -> None:
    """The bare LISTEN process: when each notification arrived."""
    import psycopg

    heard: list[tuple[int, int]] = []
    with psycopg.connect(dsn, autocommit=True, application_name="lifecycle-bench") as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        ready.set()
        while not stop.is_set():
            for notify in conn.notifies(timeout=0.2):
                at = time.monotonic_ns()
                if notify.payload.isdigit():
                    heard.append((int(notify.payload), at))
    out.send(heard)


def _clients(port: int, paths: list[str], ready: Any, stop: Any, out: Any) -> None:
    """The clients process: (event id, arrival ns, sequence shown) per client."""
    out.send(asyncio.run(_run_clients(port, paths, ready, stop)))


async def _run_clients(
    port: int, paths: list[str], ready: Any, stop: Any
) -> list[list[tuple[int, int, int]]]:
    logs: list[list[tuple[int, str]]] = [[] for _ in paths]
    sockets = [await WebSocket.connect("127.0.0.1", port, path) for path in paths]
    hello = json.dumps({"type": "hello", "have": [], "tasks": []})
    tasks = []
    for ws, log in zip(sockets, logs, strict=True):
        await ws.send_text(hello)
        tasks.append(asyncio.create_task(_follow(ws, log)))
    deadline = time.monotonic() + 30
    while not all(logs) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if all(logs):
        ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ws in sockets:
        ws.close()
    # Parsed after the measurement, so that parsing does not delay the next arrival.
    result = []
    for log in logs:
        got = []
        for at, text in log:
            for item in text.split('<li class="ev')[1:]:
                found = EVENT_ITEM.match('<li class="ev' + item)
                if found:
                    seq = SEQUENCE.search(item)
                    got.append((int(found[1]), at, int(seq[1]) if seq else -1))
        result.append(got)
    return result


async def _follow(ws: WebSocket, log: list[tuple[int, str]]) -> None:
    while (text := await ws.recv()) is not None:
        log.append((time.monotonic_ns(), text))


class WebSocket:
    """Just enough of an RFC 6455 client: text messages, pings, no extensions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str) -> WebSocket:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://{host}:{port}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            status = head.split(b"\r\n")[0].decode()
            raise ConnectionError(f"{path}: {status}")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())
        await self.writer.drain()

    async def recv(self) -> str | None:
        """The next text message; None once the server closed."""
        parts: list[bytes] = []
        read = self.reader.readexactly
        try:
            while True:
                b0, b1 = await read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(await read(2), "big")
                elif n == 127:
                    n = int.from_bytes(await read(8), "big")
                mask = await read(4) if b1 & 0x80 else b""
                payload = await read(n)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                opcode = b0 & 0x0F
                if opcode == 0x8:
                    return None
                if opcode == 0x9:
                    self._send(0xA, payload)
                    continue
                if opcode == 0xA:
                    continue
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode()
        except asyncio.IncompleteReadError:
            return None

    def close(self) -> None:
        self.writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _tail(log: Any, lines: int = 30) -> str:
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _system_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _system_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def _clean(dsn: str, keys: list[str]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        # Deleting the rows is captured too: remove the events after the rows.
        conn.execute("DELETE FROM lab_task WHERE id::text = ANY(%s)", [keys])
        conn.execute("DELETE FROM lifecycle_event WHERE task_key = ANY(%s)", [keys])
        conn.execute("DELETE FROM lifecycle_task_check WHERE task_key = ANY(%s)", [keys])


# -- (b) render ---------------------------------------------------------------------------------


def bench_render(events: int = 5000, baseline: int = 50, repeat: int = 7) -> dict[str, Any]:
    """Time the task page with ``events`` events and with ``baseline`` events."""
    results = {}
    for count in (baseline, events):
        results[count] = _render_one(count, repeat)
    result = {"events": events, "baseline": baseline, "pages": results}
    print(format_render(result), flush=True)
    return result


def _render_one(count: int, repeat: int) -> dict[str, float]:
    import statistics

    from django.conf import settings
    from django.db import connection
    from django.template.loader import render_to_string
    from django.test import Client, RequestFactory
    from django.utils.safestring import mark_safe

    from dashboard.render import events_html, finding_views
    from lifecycle.check import findings
    from lifecycle.check.rules import check
    from lifecycle.history import current_status, in_time_order
    from lifecycle.store import eventlog
    from lifecycle.timeline.layout import LANES, TimelineBuilder, pin

    key = f"bench-render-{uuid.uuid4()}"
    host = "testserver" if "testserver" in settings.ALLOWED_HOSTS else settings.ALLOWED_HOSTS[0]
    client = Client(HTTP_HOST=host.strip("[]") if host != "*" else "127.0.0.1")
    client.force_login(_bench_user())  # the page a logged-in reader gets, not the login's
    _insert_history(key, count)
    try:
        # The first GET runs the checker (nothing stored for this history yet) and loads
        # the templates; the later ones are what a page viewed again costs.
        start = time.perf_counter()
        response = client.get(f"/tasks/{key}")
        first = time.perf_counter() - start
        assert response.status_code == 200, response.status_code
        size = len(response.content)
        request = RequestFactory().get(f"/tasks/{key}")
        page, page_cpu, query, build, checker, render, whole = [], [], [], [], [], [], []
        findings_count = 0
        for _ in range(repeat):
            start, cpu = time.perf_counter(), time.thread_time()
            response = client.get(f"/tasks/{key}")
            page.append(time.perf_counter() - start)
            page_cpu.append(time.thread_time() - cpu)

            # The view's steps one by one (dashboard.pages.timeline and task.html).
            t0 = time.perf_counter()
            expected = eventlog.expected_for(key)
            records = eventlog.task_events(key)
            t1 = time.perf_counter()
            records = in_time_order(records)
            views = TimelineBuilder().extend(records)
            t2 = time.perf_counter()
            found = findings.stored_findings(key, records, expected)
            t3 = time.perf_counter()
            pin(views, found)
            render_to_string(
                "dashboard/task.html",
                {
                    "task_key": key,
                    "events": views,
                    "events_html": mark_safe(events_html(views)),
                    "findings": finding_views(found, records),
                    "expected": expected,
                    "lanes": LANES,
                    "status": current_status(records),
                    "event_count": len(records),
                    "live": True,
                    "runs": [],
                },
                request=request,
            )
            t4 = time.perf_counter()
            query.append(t1 - t0)
            build.append(t2 - t1)
            checker.append(t3 - t2)
            render.append(t4 - t3)
            findings_count = len(found)
            start = time.perf_counter()
            client.get(f"/tasks/{key}?whole=1")
            whole.append(time.perf_counter() - start)
        # The checker itself, as the first GET ran it (nothing memoised or stored).
        start = time.perf_counter()
        check(records, expected)
        check_cold = time.perf_counter() - start
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM lifecycle_event WHERE task_key = %s", [key])
            cursor.execute("DELETE FROM lifecycle_task_check WHERE task_key = %s", [key])

    def ms(values: list[float]) -> float:
        return statistics.median(values) * 1000

    return {
        "first_ms": first * 1000,
        "page_ms": ms(page),
        "page_min_ms": min(page) * 1000,
        "page_cpu_ms": ms(page_cpu),
        "query_ms": ms(query),
        "build_ms": ms(build),
        "checker_ms": ms(checker),
        "render_ms": ms(render),
        "whole_ms": ms(whole),
        "checker_cold_ms": check_cold * 1000,
        "bytes": size,
        "findings": findings_count,
        "repeat": repeat,
    }


def format_render(r: dict[str, Any]) -> str:
    lines = [
        "task page render (GET /tasks/<key> through django.test.Client, median of "
        f"{r['pages'][r['events']]['repeat']})",
        f"  {'events':>7}{'first GET':>11}{'page ms':>10}{'its CPU':>9}{'whole':>8}{'query':>9}"
        f"{'timeline':>10}{'checker':>9}{'render':>9}{'KiB':>8}{'findings':>10}"
        f"{'checker alone, cold':>21}",
    ]
    for count, p in r["pages"].items():
        lines.append(
            f"  {count:>7}{p['first_ms']:>11.1f}{p['page_ms']:>10.1f}{p['page_cpu_ms']:>9.1f}"
            f"{p['whole_ms']:>8.1f}{p['query_ms']:>9.1f}"
            f"{p['build_ms']:>10.1f}"
            f"{p['checker_ms']:>9.1f}{p['render_ms']:>9.1f}{p['bytes'] / 1024:>8.0f}"
            f"{p['findings']:>10}{p['checker_cold_ms']:>21.1f}"
        )
    page = r["pages"][r["events"]]["page_ms"]
    lines.append(
        f"  target ≤ {TARGET_RENDER_MS:g} ms with {r['events']} events: "
        f"{'met' if page <= TARGET_RENDER_MS else 'MISSED'}"
        "\n  (wall-clock medians; 'its CPU' is this thread's CPU time for the GET, which a busy"
        " machine inflates less; past 2,000 events the page is an outline and windows:"
        " 'whole' is the same page with every event (?whole=1), and the steps, timed apart"
        " in the same run, are that whole page's)"
    )
    return "\n".join(lines)


def _insert_history(key: str, count: int) -> None:
    """A long task's history, shaped like the lab's: see ``history``."""
    import psycopg

    from lifecycle.feed.listener import dsn_from_settings

    with psycopg.connect(dsn_from_settings("lifecycle-bench"), autocommit=True) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY lifecycle_event (task_key, source, kind, status, at, received_at, txid, body)"
                " FROM STDIN"
            ) as copy,
        ):
            for source, kind, status, at, txid, body in history(count):
                copy.write_row(
                    (
                        key,
                        source,
                        kind,
                        status,
                        at,
                        at + timedelta(milliseconds=3),
                        txid,
                        json.dumps(body),
                    )
                )


def history(count: int) -> list[tuple[str, str, str | None, datetime, int | None, dict]]:
    """``count`` events of one long task: mostly reads while it runs, with its commits.

    About 10% commits (progress updates, each its own transaction; every 50 steps a failed
    attempt retried: two commits and two broker steps), 40% API reads from three clients
    with xmin and snapshot, 35% probe reads, 10% warnings with a traceback. The last API read
    returns an old version from a snapshot that saw the newer one (a cached object), so
    the page has a finding to show, as a page one looks at usually has.
    """
    start = datetime.now(UTC) - timedelta(minutes=30)
    events: list[tuple[str, str, str | None, datetime, int | None, dict]] = []
    txid = 9_000_000
    status = "PENDING"
    message = str(uuid.uuid4())
    attempt = 1
    version = txid

    def add(source: str, kind: str, st: str | None, tx: int | None, body: dict) -> None:
        events.append(
            (source, kind, st, start + timedelta(milliseconds=40 * len(events)), tx, body)
        )

    def commit(kind: str, new: str, changed: dict[str, Any]) -> None:
        nonlocal txid, status, version
        txid += 7
        body = {
            "schema": 1,
            "table": "public.lab_task",
            "op": kind.upper(),
            "old_status": None if kind == "insert" else status,
            "new_status": new,
            "changed": sorted(changed),
            "values": changed,
            "application_name": "lifecycle-worker" if kind == "update" else "lifecycle-web",
            "pid": 4242,
            "user": "root",
        }
        status, version = new, txid
        add("db", kind, new, txid, body)

    def broker(kind: str, **extra: Any) -> None:
        add(
            "broker",
            kind,
            None,
            None,
            {
                "message_id": message,
                "actor": "run_task",
                "queue": "lifecycle.lab",
                "attempt": attempt,
                "pid": 4343,
                "thread": "Thread-2",
                **extra,
            },
        )

    commit("insert", "PENDING", {"id": "x", "status": "PENDING", "config": {"sleep": 60}})
    broker("enqueue")
    broker("start")
    commit("update", "RUNNING", {"status": "RUNNING", "executions": 1})
    i = 0
    while len(events) < count - 4:
        i += 1
        step = i % 10
        if step == 0 and i % 50 == 0 and status == "RUNNING":
            commit("update", "PENDING", {"status": "PENDING", "error": "transient failure"})
            broker("retry", exception="TransientError: try again", delay=100)
            attempt += 1
            broker("start")
            commit("update", "RUNNING", {"status": "RUNNING", "executions": attempt})
        elif step == 1:
            commit("update", status, {"output": {"progress": i}, "updated_at": f"t{i}"})
        elif step in (2, 4, 6, 8):
            add(
                "api",
                "read",
                status,
                None,
                {
                    "xmin": version % XID_WRAP,
                    "snapshot": f"{txid + 1}:{txid + 1}:",
                    "client": f"client-{i % 3}",
                    "path": "/lab/api/tasks/x",
                    "http_status": 200,
                },
            )
        elif step == 7:
            add(
                "log",
                "warning",
                None,
                None,
                {
                    "logger": "lifecycle.lab.work",
                    "message": f"slow step {i}",
                    "exception": "Traceback (most recent call last):\n  ...\nTimeoutError",
                    "process": "worker",
                    "pid": 4343,
                    "process_role": "worker",
                },
            )
        else:
            add(
                "probe",
                "read",
                status,
                None,
                {
                    "run": 1,
                    "sent_at": "t",
                    "received_at": "t",
                    "http_status": 200,
                    "latency_ms": 2.5,
                },
            )
    old = version
    commit("update", "COMPLETED", {"status": "COMPLETED", "output": {"sum": 6}})
    broker("ack")
    add(
        "api",
        "read",
        "RUNNING",
        None,
        {
            "xmin": old % XID_WRAP,
            "snapshot": f"{txid + 1}:{txid + 1}:",
            "client": "client-0",
            "path": "/lab/api/tasks/x",
            "http_status": 200,
        },
    )
    add(
        "probe",
        "verdict",
        "COMPLETED",
        None,
        {
            "run": 1,
            "expected": "COMPLETED",
            "observed": "COMPLETED",
            "verdict": "pass",
        },
    )
    return events[:count]


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    raise SystemExit(handle(None, vars(parser.parse_args())))
