"""Run the benchmarks: capture, ingest, the follower, the maintainer, live feed, websocket
latency, task page render, the client's publisher and what its Dramatiq middleware costs a
busy worker.

Each prints its figures beside its target and the baseline measured in the same run (a
table without the trigger, a bare LISTEN, the same page with 50 events), and a summary
table closes the run. It works on the configured database without disturbing a running
stack: its rows, tables, queues and task keys are its own, and it removes them at the end
(while it runs, its tasks do show up on a live home page).

    python -m bench [--only websocket] [--seconds 10]      (make bench)
    python -m bench --only worker-overhead [--quick]       (in the default set, minutes)
    python -m bench --only worker-instructions [--quick]   (in the default set, valgrind)

It exits 1 when a benchmark failed to run or its events were lost or doubled; a missed
target is printed, not an exit status (figures on a shared machine vary). The events the
client's middleware loses in worker-overhead are that benchmark's figure: a MISSED target.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

NAMES = (
    "capture",
    "ingest",
    "ingest-nodes",
    "follower",
    "maintainer",
    "feed",
    "websocket",
    "render",
    "page",
    "availability",
    "publisher",
    "firehose",
    "soak",
    "worker-overhead",
    "worker-instructions",
    "worker-profile",
)
# The soak takes ten minutes: it runs when asked for (--only soak), as does the worker's
# profile (--only worker-profile), which says where the time goes, not how much.
DEFAULT = (
    "capture",
    "ingest",
    "ingest-nodes",
    "follower",
    "maintainer",
    "feed",
    "websocket",
    "render",
    "page",
    "availability",
    "publisher",
    "firehose",
    "worker-overhead",
    "worker-instructions",
)

# (benchmark, figure, target) rows for the summary: value and baseline filled in by each run.
Row = dict[str, Any]


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="how long the feed and websocket runs write"
    )
    parser.add_argument("--rate", type=int, default=500, help="commits a second (feed, websocket)")
    parser.add_argument("--updates", type=int, default=20_000, help="UPDATEs per table (capture)")
    parser.add_argument(
        "--writers", type=int, default=8, help="concurrent writer connections (capture)"
    )
    parser.add_argument(
        "--writer-seconds",
        type=float,
        default=1.5,
        help="how long the writers write each table in each of 6 rounds (capture)",
    )
    parser.add_argument(
        "--skip-writers", action="store_true", help="capture without the concurrent writers"
    )
    parser.add_argument("--events", type=int, default=50_000, help="events to ingest")
    parser.add_argument(
        "--follower-changes", type=int, default=100_000, help="changes in the outbox (follower)"
    )
    parser.add_argument(
        "--maintainer-seconds",
        type=float,
        default=30.0,
        help="how long the load lasts (maintainer)",
    )
    parser.add_argument(
        "--maintainer-tasks", type=int, default=500, help="tasks a second (maintainer)"
    )
    parser.add_argument("--soak-minutes", type=float, default=10.0, help="how long the soak runs")
    parser.add_argument("--soak-rate", type=int, default=100, help="commits a second (soak)")
    parser.add_argument(
        "--publisher-events", type=int, default=5000, help="events sent each way (publisher)"
    )
    parser.add_argument(
        "--publisher-rounds", type=int, default=3, help="rounds of the four ways (publisher)"
    )
    parser.add_argument(
        "--firehose-seconds", type=float, default=60.0, help="how long tasks are sent (firehose)"
    )
    parser.add_argument("--firehose-rate", type=int, default=500, help="tasks a second (firehose)")
    parser.add_argument(
        "--worker-messages",
        default="3000,10000,20000",
        help="queue sizes drained (worker-overhead; the largest for worker-profile)",
    )
    parser.add_argument(
        "--worker-rounds", type=int, default=3, help="interleaved rounds (worker-overhead)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="worker-overhead: 2 rounds of 2,000 messages; worker-profile: 3,000 messages;"
        " firehose: 10 s at 200 tasks/s",
    )


def run(options: dict[str, Any]) -> int:
    wanted = options.get("only") or list(DEFAULT)
    rows: list[Row] = []
    failed: list[str] = []
    runners: dict[str, Callable[[dict[str, Any], list[Row]], bool]] = {
        "capture": _capture,
        "ingest": _ingest,
        "ingest-nodes": _ingest_nodes,
        "follower": _follower,
        "maintainer": _maintainer,
        "feed": _feed,
        "websocket": _websocket,
        "render": _render,
        "page": _page,
        "availability": _availability,
        "soak": _soak,
        "publisher": _publisher,
        "firehose": _firehose,
        "worker-overhead": _worker_overhead,
        "worker-instructions": _worker_instructions,
        "worker-profile": _worker_profile,
    }
    for name in NAMES:
        if name not in wanted:
            continue
        print(f"\n== {name} ==", flush=True)
        started = time.monotonic()
        try:
            ok = runners[name](options, rows)
        except Exception:
            traceback.print_exc()
            rows.append(
                {
                    "bench": name,
                    "figure": "error (see above)",
                    "value": "—",
                    "baseline": "—",
                    "target": "—",
                    "verdict": "ERROR",
                }
            )
            ok = False
        if not ok:
            failed.append(name)
        print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
    print(summary(rows), flush=True)
    return 1 if failed else 0


def summary(rows: list[Row]) -> str:
    head = ("benchmark", "figure", "value", "baseline", "target", "")
    table = [head] + [
        (r["bench"], r["figure"], r["value"], r["baseline"], r["target"], r["verdict"])
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(head))]
    lines = ["", "== summary =="]
    for i, line in enumerate(table):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


class _Tee(io.TextIOBase):
    """Print as usual and keep a copy, to read figures that a benchmark only prints."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _printed(run: Callable[[], bool]) -> tuple[bool, str]:
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        ok = run()
    return ok, tee.copy.getvalue()


def _capture(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import capture as bench_capture

    for sync in ("on", "off"):
        _, text = _printed(
            functools.partial(bench_capture.bench_trigger, options["updates"], 1000, 10, sync)
        )
        overhead = re.search(r"overhead: ([+-][\d.]+)%", text)
        plain = re.search(r"without trigger:\s+(\d+) rows/s", text)
        watched = re.search(r"with trigger:\s+(\d+) rows/s", text)
        deployed = sync == "on"
        value = float(overhead[1]) if overhead else None
        rows.append(
            {
                "bench": "capture",
                "figure": f"trigger overhead per UPDATE (synchronous_commit={sync})",
                "value": f"{value:+.1f}% ({watched[1] if watched else '?'} rows/s)"
                if value is not None
                else "?",
                "baseline": f"{plain[1]} rows/s without trigger" if plain else "?",
                "target": f"≤ {bench_capture.TARGET_TRIGGER_OVERHEAD:g}%"
                if deployed
                else "(context)",
                "verdict": _verdict(
                    value is not None and value <= bench_capture.TARGET_TRIGGER_OVERHEAD
                )
                if deployed
                else "",
            }
        )
        against = re.search(r"generated function against the floor: ([+-][\d.]+)%", text)
        floor = re.search(r"floor: bare row \+ NOTIFY\s+(\d+) rows/s", text)
        if deployed and against:
            value = float(against[1])
            rows.append(
                {
                    "bench": "capture",
                    "figure": "generated per-table function (outbox) against the floor",
                    "value": f"{value:+.1f}%",
                    "baseline": f"floor {floor[1]} rows/s" if floor else "?",
                    "target": f"≤ {bench_capture.TARGET_GENERATED_OVER_FLOOR:g}%",
                    "verdict": _verdict(value <= bench_capture.TARGET_GENERATED_OVER_FLOOR),
                }
            )
    if options.get("skip_writers"):
        return True  # a missed target is printed, not a failure
    r = bench_capture.bench_writers(options["writers"], options["writer_seconds"])
    for name, figure in (
        ("idle", "no follower waiting (a busy follower)"),
        ("waiting", "a follower waiting (each commit notifies)"),
    ):
        rows.append(
            {
                "bench": "capture",
                "figure": f"{r['writers']} concurrent writers, commits/s with the capture"
                f" trigger (outbox), {figure}",
                "value": f"{r['rate'][name]:,.0f}/s ({r['share'][name]:.0%} of the floor)",
                "baseline": f"{r['rate']['floor']:,.0f}/s without trigger",
                "target": "(context)",
                "verdict": "",
            }
        )
    return not r["lost"]  # a missed target is printed, not a failure


def _ingest(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import capture as bench_capture

    r = bench_capture.bench_ingest(options["events"])
    floor = r["rate"]["floor"]
    for shape, figure in (
        ("batches", "events/s stored, as clients send now (batches of up to 500)"),
        ("single", "events/s stored, one event a message (old clients)"),
    ):
        rate = r["rate"][shape]
        rows.append(
            {
                "bench": "ingest",
                "figure": f"{figure} ({rate / floor:.0%} of the floor)",
                "value": f"{rate:,.0f}/s",
                "baseline": f"bare COPY {floor:,.0f}/s",
                "target": f"≥ {bench_capture.TARGET_INGEST_RATE:,.0f}/s"
                if shape == "batches"
                else "(context)",
                "verdict": _verdict(r["met"]) if shape == "batches" else "",
            }
        )
    return not r["lost"]


def _ingest_nodes(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import ingest_nodes

    r = ingest_nodes.bench_ingest_nodes(options["events"])
    one, two = r["rate"]["one node"], r["rate"]["two nodes"]
    rows.append(
        {
            "bench": "ingest-nodes",
            "figure": f"events/s stored by two nodes' ingestors ({two / one:.2f}x one node's)",
            "value": f"{two:,.0f}/s",
            "baseline": f"one node's ingestor {one:,.0f}/s",
            "target": "(context)",
            "verdict": "",
        }
    )
    return not r["wrong"]


def _follower(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import follower as bench_follower

    r = bench_follower.bench_follower(options["follower_changes"])
    rate, floor = r["rate"]["follower"], r["rate"]["floor"]
    rows.append(
        {
            "bench": "follower",
            "figure": f"captured changes/s copied out of one watched database's outbox"
            f" ({r['changes']:,}; {rate / floor:.0%} of the floor)",
            "value": f"{rate:,.0f}/s",
            "baseline": f"DELETE ... RETURNING piped by COPY {floor:,.0f}/s",
            "target": f"≥ {bench_follower.TARGET_RATE:,.0f}/s",
            "verdict": _verdict(r["met"]),
        }
    )
    single = r["single_ms"]
    rows.append(
        {
            "bench": "follower",
            "figure": f"one change committed, then copied: a copy's p50 / p99 ({single['count']})",
            "value": f"{single['follower'][0]:.2f} / {single['follower'][1]:.2f} ms",
            "baseline": f"one floor batch {single['floor'][0]:.2f} / {single['floor'][1]:.2f} ms",
            "target": "—",
            "verdict": "",
        }
    )
    return not r["wrong"]


def _maintainer(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import maintainer as bench_maintainer

    r = bench_maintainer.bench_maintainer(
        options["maintainer_seconds"], options["maintainer_tasks"]
    )
    load, trickle = r["phases"]["load"], r["phases"]["trickle"]
    rows.append(
        {
            "bench": "maintainer",
            "figure": f"stored findings behind a task's last event, p50 / p99, at"
            f" {load['rate']:,.0f} tasks/s ({load['rate'] * 8:,.0f} events/s;"
            f" {load['missed']} never current)",
            "value": f"{load['p50']:.2f} / {load['p99']:.2f} s",
            "baseline": f"{trickle['rate']:.0f} tasks/s: {trickle['p50']:.2f} /"
            f" {trickle['p99']:.2f} s",
            "target": f"p99 ≤ {bench_maintainer.TARGET_P99_S:g} s",
            "verdict": _verdict(r["met"]),
        }
    )
    return True  # a missed target is printed, not a failure


def _feed(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import feed as bench_feed

    result = bench_feed.bench_feed(options["seconds"], options["rate"])
    feed, raw = result["listeners"]["LiveFeed"], result["listeners"]["raw LISTEN"]
    rows.append(
        {
            "bench": "feed",
            "figure": f"commit -> LiveFeed callback, p50 / p99 at {result['achieved_rate']:.0f}/s",
            "value": f"{feed['p50_ms']:.2f} / {feed['p99_ms']:.2f} ms",
            "baseline": f"raw LISTEN {raw['p50_ms']:.2f} / {raw['p99_ms']:.2f} ms",
            "target": "(part of websocket)",
            "verdict": "",
        }
    )
    lost = any(f["received"] < result["commits"] for f in result["listeners"].values())
    return not lost and not result["feed_duplicates"]


def _websocket(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import dashboard as bd

    ok = True
    for per_task in (1, 5):
        r = bd.bench_websocket(options["seconds"], options["rate"], 50, per_task)
        ws, raw = r["websocket"], r["raw"]
        rows.append(
            {
                "bench": "websocket",
                "figure": f"commit -> fragment p50 / p99, 50 clients, {per_task} per task, "
                f"{r['achieved_rate']:.0f}/s (lost {r['lost']}, doubled {r['duplicates']}; "
                f"daphne CPU {r['cpu']['daphne']:.0%})",
                "value": f"{ws['p50']:.2f} / {ws['p99']:.2f} ms",
                "baseline": f"raw LISTEN {raw['p50']:.2f} / {raw['p99']:.2f} ms",
                "target": f"≤ {bd.TARGET_WS_P50_MS:g} / {bd.TARGET_WS_P99_MS:g} ms",
                "verdict": _verdict(
                    ws["p50"] <= bd.TARGET_WS_P50_MS and ws["p99"] <= bd.TARGET_WS_P99_MS
                ),
            }
        )
        ok &= r["lost"] == 0 and r["duplicates"] == 0
    return ok


def _render(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import dashboard as bd

    r = bd.bench_render()
    for count in (r["events"],):
        page, base = r["pages"][count], r["pages"][r["baseline"]]
        rows.append(
            {
                "bench": "render",
                "figure": f"GET /tasks/<key>, {count} events (first GET {page['first_ms']:.0f} ms)",
                "value": f"{page['page_ms']:.1f} ms",
                "baseline": f"{r['baseline']} events: {base['page_ms']:.1f} ms",
                "target": f"≤ {bd.TARGET_RENDER_MS:g} ms",
                "verdict": _verdict(page["page_ms"] <= bd.TARGET_RENDER_MS),
            }
        )
    return True


def _page(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import page as bench_page

    r = bench_page.bench_page()
    long = r["pages"][f"{r['events']} events"]
    before = r["pages"][f"{r['baseline']} events, whole (before)"]
    rows.append(
        {
            "bench": "page",
            "figure": f"{r['events']} events: interactive in Chromium",
            "value": f"{long['interactive_ms']:.0f} ms (server: first GET "
            f"{long['first_ms']:.0f} ms, again {long['server_ms']:.0f} ms)",
            "baseline": f"{r['baseline']} events whole: {before['interactive_ms']:.0f} ms",
            "target": f"≤ {bench_page.TARGET_INTERACTIVE_MS:g} ms",
            "verdict": _verdict(long["interactive_ms"] <= bench_page.TARGET_INTERACTIVE_MS),
        }
    )
    rows.append(
        {
            "bench": "page",
            "figure": f"{r['events']} events: bytes transferred",
            "value": f"{long['bytes'] / 1048576:.2f} MB",
            "baseline": f"{r['baseline']} events whole: {before['bytes'] / 1048576:.2f} MB",
            "target": f"≤ {bench_page.TARGET_BYTES / 1048576:g} MB",
            "verdict": _verdict(long["bytes"] <= bench_page.TARGET_BYTES),
        }
    )
    return True


def _availability(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import availability as b

    r = b.bench_availability()
    h, f, rd = r["handshakes"], r["floor"], r["readers"]
    back = (rd["rss_after_mb"] - rd["rss_before_mb"]) / rd["rss_before_mb"]
    rows += [
        {
            "bench": "availability",
            "figure": f"{h['sockets']} feed websockets at once: handshakes completed",
            "value": f"{h['completed']} (slowest {h['handshake_max_ms']} ms)",
            "baseline": f"bare ASGI app: {f['completed']} (slowest {f['handshake_max_ms']} ms)",
            "target": f"{h['sockets']}",
            "verdict": _verdict(h["completed"] == h["sockets"]),
        },
        {
            "bench": "availability",
            "figure": "GET / p99 under 10 empty hellos and 8 exports of 100,000 events",
            "value": f"{rd['loaded_p99_ms']} ms",
            "baseline": f"alone: {rd['alone_p99_ms']} ms",
            "target": f"≤ {b.TARGET_P99_MS:g} ms",
            "verdict": _verdict(rd["loaded_p99_ms"] <= b.TARGET_P99_MS),
        },
        {
            "bench": "availability",
            "figure": "web process memory 5 s after those readers",
            "value": f"{rd['rss_after_mb']} MB (peak {rd['rss_peak_mb']})",
            "baseline": f"before: {rd['rss_before_mb']} MB",
            "target": f"within {b.TARGET_MEMORY_BACK:.0%}",
            "verdict": _verdict(back <= b.TARGET_MEMORY_BACK),
        },
    ]
    return True


def _soak(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench.soak import TARGET_GROWTH, bench_soak, format_soak

    result = bench_soak(options["soak_minutes"], options["soak_rate"])
    print(format_soak(result), flush=True)
    for name, growth in result["growth"].items():
        rows.append(
            {
                "bench": "soak",
                "figure": f"{name} RSS growth after warm-up",
                "value": f"{growth * 100:+.1f} % ({result['end'][name] / 1024:.0f} MiB)",
                "baseline": f"{result['warm'][name] / 1024:.0f} MiB warm",
                "target": f"≤ {TARGET_GROWTH * 100:.0f} %",
                "verdict": _verdict(growth <= TARGET_GROWTH),
            }
        )
    return result["db_events"] >= result["commits"] and result["api_events"] >= result["published"]


def _publisher(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import publisher as bench_publisher

    r = bench_publisher.bench_publisher(options["publisher_events"], options["publisher_rounds"])
    floor, rate = r["rate"]["pipelined confirms"], r["rate"]["Publisher"]
    rows.append(
        {
            "bench": "publisher",
            "figure": f"Publisher, events/s confirmed ({r['events']:,} events, median of"
            f" {r['rounds']})",
            "value": f"{rate:,.0f}/s ({rate / floor:.0%} of the floor)",
            "baseline": f"pika pipelined {floor:,.0f}/s, one at a time"
            f" {r['rate']['blocking confirms']:,.0f}/s, no confirms"
            f" {r['rate']['no confirms']:,.0f}/s",
            "target": f"≥ {bench_publisher.TARGET_RATE:,.0f}/s and ≥"
            f" {bench_publisher.TARGET_FLOOR_SHARE:.0%} of the floor",
            "verdict": _verdict(r["met_rate"] and r["met_share"]),
        }
    )
    rows.append(
        {
            "bench": "publisher",
            "figure": "caller's CPU per publish() (process CPU per event)",
            "value": f"{r['caller_us']:.1f} µs ({r['cpu_us']['Publisher']:.0f} µs)",
            "baseline": f"make_message() {r['make_message_us']:.1f} µs",
            "target": "(context)",
            "verdict": "",
        }
    )
    return not r["lost"] and not r["dropped"]


def _firehose(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import firehose as fh

    if options["quick"]:
        r = fh.bench_firehose(fh.QUICK_SECONDS, fh.QUICK_RATE)
    else:
        r = fh.bench_firehose(options["firehose_seconds"], options["firehose_rate"])
    load = f"{r['rate']}/s asked for {r['seconds']:g} s"
    stored = sum(k["stored"] for k in r["kinds"])
    ws = r["push"]["websocket"]
    figures = [
        (
            f"events stored, {load} (lost {r['lost']}, doubled {r['doubled']})",
            f"{stored:,}",
            f"{r['expected_total']:,} expected",
            "nothing lost",
            r["ok"],
        ),
        ("gap events", str(r["gaps"]), "—", "none", r["gaps"] == 0),
        (
            "events stored during the load (the application's pace: worker acks)",
            f"{r['during']['stored'] / r['window']:,.0f}/s"
            f" ({r['during']['acked'] / r['window']:,.0f} acks/s)",
            f"asked: {r['rate'] * sum(fh.PER_TASK.values()) + fh.WATCH_RATE:,}/s",
            "(context)",
            None,
        ),
    ]
    for path in ("ingest", "follower"):
        lag = next(x for x in r["lags"] if x["path"] == path and not x["source"])
        figures.append(
            (
                f"{path} lag p50 / p99",
                f"{lag['p50']:.0f} / {lag['p99']:.0f} ms",
                "—",
                f"p99 ≤ {fh.TARGET_LAG_S * 1000:g} ms",
                lag["p99"] <= fh.TARGET_LAG_S * 1000,
            )
        )
    figures.append(
        (
            "websocket push p99, one watched task",
            f"{ws['p99']:.1f} ms",
            f"commit -> stored p99 {r['push']['to_store']['p99']:.1f} ms",
            f"≤ {fh.TARGET_PUSH_P99_MS:g} ms",
            ws["p99"] <= fh.TARGET_PUSH_P99_MS,
        )
    )
    for name, label in (("home", "GET /"), ("task", "GET /tasks/<key>")):
        page = r["pages"][name]
        figures.append(
            (
                f"{label} p99 while it runs",
                f"{page['p99']:.0f} ms",
                f"p50 {page['p50']:.0f} ms",
                f"≤ {fh.TARGET_PAGE_P99_MS:g} ms",
                page["n"] > 0 and page["p99"] <= fh.TARGET_PAGE_P99_MS,
            )
        )
    ours = {k: v for k, v in r["cpu"]["used"].items() if k != fh.ELSEWHERE}
    busiest = max(ours.items(), key=lambda x: x[1])
    figures.append(
        (
            "busiest process over the load",
            f"{busiest[0]}: {busiest[1] / r['cpu']['seconds']:.0%} of a core",
            f"machine {r['cpu']['machine']:.0%} busy",
            "(context)",
            None,
        )
    )
    for figure, value, baseline, target, met in figures:
        rows.append(
            {
                "bench": "firehose",
                "figure": figure,
                "value": value,
                "baseline": baseline,
                "target": target,
                "verdict": "" if met is None else _verdict(met),
            }
        )
    return bool(r["ok"])


def _worker_sizes(options: dict[str, Any]) -> tuple[int, ...]:
    from bench import worker_overhead

    if options["quick"]:
        return worker_overhead.QUICK_SIZES
    return tuple(int(x) for x in str(options["worker_messages"]).split(","))


def _worker_overhead(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import worker_overhead

    rounds = worker_overhead.QUICK_ROUNDS if options["quick"] else options["worker_rounds"]
    r = worker_overhead.bench_worker_overhead(_worker_sizes(options), rounds)
    largest = max(r["by_size"])
    for count, s in r["by_size"].items():
        rows.append(
            {
                "bench": "worker-overhead",
                "figure": f"no-op actor, 8 threads, {count:,} messages: drain time with the"
                f" middleware (median of {rounds})",
                "value": f"{s['slowdown']:+.0%} ({s['with_rate']:,.0f}/s)",
                "baseline": f"without: {s['without_rate']:,.0f}/s",
                "target": f"≤ {worker_overhead.TARGET_SLOWDOWN:.0%}"
                if count == largest
                else "(context)",
                "verdict": _verdict(s["slowdown"] <= worker_overhead.TARGET_SLOWDOWN)
                if count == largest
                else "",
            }
        )
        rows.append(
            {
                "bench": "worker-overhead",
                "figure": f"{count:,} messages: events that reached RabbitMQ (gap events)",
                "value": f"{s['events']:,.0f} ({s['kinds']['gap']:,.0f})",
                "baseline": f"{s['expected']:,} expected",
                "target": "all, no gap",
                "verdict": _verdict(s["events"] == s["expected"] and not s["kinds"]["gap"]),
            }
        )
        if "control" in s:
            low, high = s["control_interval"]
            rows.append(
                {
                    "bench": "worker-overhead",
                    "figure": f"{count:,} messages: the same rounds with a middleware that does"
                    " nothing (A/A: the bench's noise)",
                    "value": f"{s['control']:+.0%} (90 %: {low:+.0%} to {high:+.0%})",
                    "baseline": f"without: {s['without_rate']:,.0f}/s",
                    "target": "(context)",
                    "verdict": "",
                }
            )
    # Events lost by the client are its measured shortfall (MISSED above), not a failed run.
    return not any(s["stray"] for s in r["by_size"].values())


def _worker_instructions(options: dict[str, Any], rows: list[Row]) -> bool:
    """The worker's instructions per message under valgrind: the middleware's own share,
    steady where the drain's wall time is not (``bench_worker_instructions``)."""
    import shutil

    from bench import worker_overhead

    if shutil.which("valgrind") is None:
        print("worker-instructions: valgrind is not installed (apt-get install valgrind): skipped")
        return True
    sizes = (300, 1000) if options["quick"] else worker_overhead.INSTRUCTION_SIZES
    r = worker_overhead.bench_worker_instructions(sizes, ("full", "minimal", "empty"))
    per = r["per_message"]
    base = per["without"]
    for name, label in (
        ("full", "with the middleware"),
        ("minimal", "with the least start and ack hooks (a time and the message kept)"),
        ("empty", "with a middleware that does nothing (Dramatiq's cost of one more)"),
    ):
        share = per[name] / base - 1
        rows.append(
            {
                "bench": "worker-instructions",
                "figure": f"no-op actor, 8 threads: the worker's instructions per message {label}"
                " (valgrind)",
                "value": f"{share:+.1%} ({per[name] - base:+,.0f})",
                "baseline": f"without: {base:,.0f}",
                "target": (
                    f"≤ {worker_overhead.TARGET_SLOWDOWN:.0%}" if name == "full" else "(context)"
                ),
                "verdict": _verdict(share <= worker_overhead.TARGET_SLOWDOWN)
                if name == "full"
                else "",
            }
        )
    return True


def _worker_profile(options: dict[str, Any], rows: list[Row]) -> bool:
    from bench import worker_overhead

    count = 3000 if options["quick"] else max(_worker_sizes(options))
    r = worker_overhead.bench_worker_profile(count)
    whole = sum(r["with"]["totals"].values()) or 1.0
    shares = (
        ("the middleware's hooks", r["with"]["candidates"][worker_overhead.HOOKS_ROW]),
        ("the publisher thread", r["with"]["totals"].get("publisher thread", 0.0)),
    )
    for label, seconds in shares:
        rows.append(
            {
                "bench": "worker-profile",
                "figure": f"{count:,} messages: {label}, share of the worker's CPU (profiled)",
                "value": f"{seconds / whole:.0%}",
                "baseline": "—",
                "target": "(context)",
                "verdict": "",
            }
        )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
