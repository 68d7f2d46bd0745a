"""What the Dramatiq middleware costs a busy worker, and how many of its events arrive (issue 24).

    python -m bench --only worker-overhead [--quick] [--worker-messages 3000,10000,20000]
        [--worker-rounds 3]
    python -m bench --only worker-profile [--quick]

**worker-overhead.** A queue of N messages for a no-op actor that takes ``task_id``
(``bench.worker_app``) is enqueued first, then drained by a real ``dramatiq`` worker (one
process, 8 threads), once without and once with ``LifecycleEvents()`` on its broker, for
each N and in ``--worker-rounds`` interleaved rounds (the pair's order alternates). The
drain is timed inside the worker, from its boot to the ack of the N-th message; the
worker's CPU over the same span is its ``time.process_time``. The slowdown of a pair is
its time with over its time without; the figure is the median over the rounds.

With the middleware, the enqueue events come from the bench process (``LifecycleEvents``
on its enqueuing broker, its own ``Publisher`` with the default buffer), which closes its
publisher (waiting up to 120 s) before the worker starts, so that they do not share the
two cores with the timed drain; the start and ack events come from the worker, which is
stopped (SIGTERM, a graceful stop) once it acked the N-th message. Every event goes to a
namespace of the bench's own (``<ns>-bench-worker-<hex>``): once the worker has exited,
the messages in ``<ns>.ingest`` are the events that reached RabbitMQ (3 expected per
message: enqueue, start, ack), counted per kind by queues bound beside it, and the ``gap``
events are read for the drops they report. Everything is purged between runs and deleted
at the end.

``python -m bench.worker_overhead --variant hooks`` (or ``buffer``) runs the same drains
with the middleware's hooks on a publisher whose thread never runs, each event discarded as
it is emitted (or buffered and never sent): the floor of what the hooks alone (or the hooks
and the buffer) cost the worker threads, without the publisher thread's share;
``--variant empty`` adds a middleware with no hook of its own (Dramatiq's cost of one
more, an A/A control of the bench's noise), and ``--variant minimal`` one whose start and
ack hooks each keep a time and the message in a deque: the floor of any start and ack event.
``--variant inlined`` is the ceiling of a middleware in Python: the same start and ack
tuples to the same publisher, with every lookup bound once and no call but the
publisher's append (none of the checks the shipped hooks make: another key function, a
subclass's ``_key``, a publisher replaced after boot, a key prefix); ``inlined-noctx``
the same without the two context variables, and ``inlined-hooks`` the same with every
event discarded (its hooks alone, without the link's share).
``--variant timed`` is the middleware as shipped, its hooks timed in place (the thread's CPU
clock around each hook, one message in 8): what its own code costs inside a busy worker.
Each round's line also gives each kind of thread's CPU spent in the kernel (system calls,
futex waits for the GIL or a lock), from ``/proc``.

``--shadow`` adds, at the largest size and in the same rounds, a drain without the
middleware beside a *shadow*: another process that sends the same start and ack events
through the client (``Publisher._note``, its link, its relay process, RabbitMQ) at the pace
the worker takes messages off the queue. Everything the events cost outside the worker
process is then spent on the same cores at the same time, and nothing inside it: a shadow
that slows the worker as much as the middleware does says that the slowdown is the
machine's cores, shared with RabbitMQ and the relay, not the worker's own code.
``--also V,W`` drains more variants in the same rounds. ``--instructions`` counts the
worker's instructions per message under valgrind instead (``bench_worker_instructions``):
the middleware's own share, steady where the drain's wall time is not.

**worker-profile.** Two drains (the largest N, or 3,000 with ``--quick``), without and
with the middleware, with every thread of the worker under ``cProfile`` timed by the
thread's own CPU clock (``bench.worker_app``), from boot to the end of its graceful stop;
it prints each kind of thread's CPU per message, the candidate costs (the hooks' body and
key, ``emit``'s lock and append, the publisher thread's encoding, uuids, times, one
``basic_publish`` a batch and its confirm) and the top functions by own time. Not py-spy:
its ``--gil`` mode charged the consumer thread with time its own CPU clock says it never
spent, and without ``--gil`` it counted threads waiting for the GIL, a lock or a socket as
busy.

Targets (issue 24): at 20,000 messages the median slowdown is at most 5 %, and every event
arrives with no ``gap``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import Affinities, descendants
from bench.publisher import cpu_seconds, rabbitmq_pids

ROOT = Path(__file__).resolve().parents[1]
THREADS = 8
SIZES = (3_000, 10_000, 20_000)
ROUNDS = 3
QUICK_SIZES = (2_000,)
QUICK_ROUNDS = 2
TARGET_SLOWDOWN = 0.05  # at the largest size
KINDS = ("enqueue", "start", "ack", "gap")
ROLES = ("worker threads", "consumer threads", "publisher thread", "other threads")
ENQUEUE_FLUSH = 120.0  # seconds the enqueuing process may take to send its events
# ``--variant``: the worker's middleware as shipped (``full``), or, to show the floor, its
# hooks with a publisher whose thread never runs, every event discarded as emitted
# (``hooks``) or buffered and never sent (``buffer``): only ``full`` sends start and ack.
# ``empty``: a middleware with no hook of its own, Dramatiq's cost of calling one more;
# ``minimal``: a start and an ack hook that each keep a time and the message, no more;
# ``inlined``: the same events as ``full`` at the least a Python middleware can spend
# (``inlined-noctx``: without the context variables; ``inlined-hooks``: none sent).
VARIANTS = {
    "full": "1",
    "hooks": "hooks",
    "inlined": "inlined",
    "inlined-noctx": "inlined-noctx",
    "inlined-hooks": "inlined-hooks",
    "buffer": "buffer",
    "empty": "empty",
    "minimal": "minimal",
    "timed": "timed",
    "lazy": "lazy",
}


WORKER_CPU = 0  # ``--pin``: the worker's core; RabbitMQ and the relay get the rest
OTHER_CPUS = set(range(1, os.cpu_count() or 2)) or {0}


def relay_pids(root: int) -> list[int]:
    """The relay processes among ``root``'s descendants (``lifecycle.client.relay``)."""
    found = []
    for pid in descendants(root):
        try:
            if b"lifecycle.client.relay" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


class Bench:
    """A namespace of the bench's own: its ingest queue, a counting queue per kind beside
    it, the actor's queue; one drain after another, and the clean-up."""

    def __init__(self) -> None:
        import pika

        from lifecycle.client import config, topology

        self.url = config.amqp_url()
        self.namespace = f"{config.namespace()}-bench-worker-{uuid.uuid4().hex[:8]}"
        self.exchange = config.exchange_name(self.namespace)
        self.ingest = topology.ingest_queue(self.namespace)
        self.queue = f"{self.namespace}.noop"
        self.counters = {kind: f"{self.namespace}.count-{kind}" for kind in KINDS}
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
        self.connection = pika.BlockingConnection(pika.URLParameters(self.url))
        self.channel = self.connection.channel()
        topology.declare(self.channel, self.namespace)
        for kind, name in self.counters.items():
            self.channel.queue_declare(name, durable=True)
            self.channel.queue_bind(name, self.exchange, routing_key=f"*.{kind}")
        self.runs = 0
        self.rabbitmq = rabbitmq_pids()

    def queues(self) -> list[str]:
        dramatiq = [self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"]  # and its delay, dead
        return [self.ingest, *self.counters.values(), *dramatiq]

    def held(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def purge(self) -> None:
        for queue in (self.ingest, *self.counters.values()):
            self.channel.queue_purge(queue)

    def close(self) -> None:
        try:
            for queue in self.queues():
                try:
                    self.channel.queue_delete(queue)
                except Exception:  # never declared (no run got that far): reopen and go on
                    self.channel = self.connection.channel()
            self.channel.exchange_delete(self.exchange)
        finally:
            self.connection.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- one drain -------------------------------------------------------------------------

    def enqueue(self, count: int, middleware: bool) -> dict[str, Any]:
        """Put ``count`` messages for ``noop`` on the queue, with or without the middleware
        on the enqueuing broker; its events are flushed before this returns."""
        import dramatiq
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        from lifecycle.client import LifecycleEvents
        from lifecycle.client.publisher import Publisher

        publisher = Publisher(url=self.url, namespace=self.namespace) if middleware else None
        events = [LifecycleEvents(publisher=publisher)] if middleware else []
        broker = RabbitmqBroker(url=self.url, middleware=events)
        self.runs += 1
        try:
            start = time.perf_counter()
            for i in range(count):
                broker.enqueue(
                    dramatiq.Message(
                        queue_name=self.queue,
                        actor_name="noop",
                        args=(),
                        kwargs={"task_id": f"bench-worker-{self.runs}-{i}"},
                        options={},
                    )
                )
            seconds = time.perf_counter() - start
        finally:
            broker.close()
        found: dict[str, Any] = {"enqueue_rate": count / seconds}
        if publisher is not None:
            start = time.perf_counter()
            found["enqueue_flushed"] = publisher.close(timeout=ENQUEUE_FLUSH)
            found["enqueue_flush_s"] = time.perf_counter() - start
            found["enqueue_stats"] = publisher.stats()
        return found

    variant = "full"  # what the worker's middleware publishes: VARIANTS
    instructions = False  # the worker under valgrind, its instructions counted
    linger: float | None = None  # LIFECYCLE_PUBLISH_LINGER for the worker, if not its own
    pin = False  # the worker on a core of its own, RabbitMQ and the relay on the others
    placed = Affinities()  # ``pin``: RabbitMQ and the relays moved, given back at the end

    def drain(
        self,
        count: int,
        middleware: bool,
        profile: Path | None = None,
        variant: str | None = None,
        shadow: bool = False,
    ) -> dict[str, Any]:
        """Enqueue ``count`` messages, then time a worker that acks them all (``variant``:
        another middleware than the bench's, ``empty`` for the control; ``shadow``: no
        middleware, a shadow process sending its events at its pace, ``run_shadow``)."""
        variant = variant or self.variant
        # The control: a middleware that does nothing, in rounds of another variant's. Its
        # messages are enqueued without the middleware, so no events are expected of it.
        control = middleware and variant == "empty" and self.variant != "empty"
        also = middleware and not control and variant != self.variant  # ``--also``
        self.purge()
        run = self.enqueue(count, middleware and not control and not also)
        deadline = time.monotonic() + 10  # published without confirms: they may still be on the way
        while (waiting := self.held(self.queue)) < count and time.monotonic() < deadline:
            self.connection.sleep(0.05)
        if waiting != count:
            raise RuntimeError(f"{waiting} messages on the queue, {count} enqueued")
        result_path = self.tmp / f"run-{self.runs}.json"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DJANGO_SETTINGS_MODULE", "LIFECYCLE_KEY_PREFIX", "LIFECYCLE_TASK_KEY")
        }
        env.update(
            AMQP_URL=self.url,
            LIFECYCLE_NAMESPACE=self.namespace,
            BENCH_QUEUE=self.queue,
            BENCH_EXPECT=str(count),
            BENCH_RESULT=str(result_path),
            BENCH_LIFECYCLE=(VARIANTS[variant] if middleware else "0"),
        )
        if self.linger is not None:
            env["LIFECYCLE_PUBLISH_LINGER"] = f"{self.linger:.3f}"
        if profile is not None:
            profile.mkdir(exist_ok=True)
            env["BENCH_PROFILE"] = str(profile)
        log = tempfile.TemporaryFile()
        rabbitmq = cpu_seconds(self.rabbitmq)
        launcher = ["taskset", "-c", str(WORKER_CPU)] if self.pin else []
        shadowing = None
        if shadow:
            shadowing = subprocess.Popen(
                [sys.executable, "-m", "bench.worker_overhead", "--shadow", self.queue]
                + ["--messages", str(count)],
                cwd=ROOT,
                env={**env, "BENCH_SHADOW_TASKS": f"bench-worker-{self.runs}-"},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            assert shadowing.stdout is not None
            if shadowing.stdout.readline().strip() != b"ready":
                shadowing.kill()
                raise RuntimeError(f"the shadow did not start: {_output(shadowing)}")
            shadow_base = cpu_seconds([shadowing.pid])  # its imports and start: not counted
        counted = self.tmp / f"valgrind-{self.runs}" if self.instructions else None
        if counted is not None:
            counted.mkdir()
            launcher = [  # in place of ``taskset``: the count does not depend on the core
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
                "--trace-children=yes",  # the worker process (a fork: followed anyway)
                "--trace-children-skip-by-arg=*lifecycle.client.relay*",  # not the relay
                f"--log-file={counted}/%p",
            ]
        worker = subprocess.Popen(
            launcher
            + [sys.executable, "-m", "dramatiq", "bench.worker_app"]
            + ["--processes", "1", "--threads", str(THREADS), "--queues", self.queue],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        relays: set[int] = set()
        try:
            deadline = time.monotonic() + (600 + count / 10 if counted else 60 + count / 100)
            while not result_path.exists():
                if worker.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"the worker did not ack {count} messages:\n{tail}")
                sources = [worker.pid] + ([shadowing.pid] if shadowing else [])
                for pid in {p for s in sources for p in relay_pids(s)} - relays:
                    relays.add(pid)
                    if self.pin:
                        self.placed.place([pid], OTHER_CPUS)
                if shadowing is not None and shadowing.poll() not in (None, 0):
                    raise RuntimeError(f"the shadow failed: {_output(shadowing)}")
                time.sleep(0.02)
            rabbitmq = cpu_seconds(self.rabbitmq) - rabbitmq
            relay_cpu = cpu_seconds(sorted(relays)) if relays else None
            shadow_cpu = cpu_seconds([shadowing.pid]) - shadow_base if shadowing else None
            worker.send_signal(signal.SIGTERM)  # a graceful stop: the middleware closes
            worker.wait(900 if counted else 120)
            if shadowing is not None:
                assert shadowing.stdin is not None
                shadowing.stdin.close()  # measured: it may close its publisher
                shadowing.wait(120)
                if shadowing.returncode:
                    raise RuntimeError(f"the shadow failed: {_output(shadowing)}")
        finally:
            for process in (worker, shadowing):
                if process is not None and process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)  # its session: its children too
                    process.wait()
            log.close()
        timed = json.loads(result_path.read_text())
        shutdown_path = Path(f"{result_path}.shutdown")
        shutdown = json.loads(shutdown_path.read_text()) if shutdown_path.exists() else {}
        left = self.held(self.queue)
        if left:
            raise RuntimeError(f"{left} messages left on the queue after the worker acked all")
        run.update(
            middleware=middleware,
            control=control,
            also=variant if also else None,
            shadow=shadow,
            shadow_cpu=shadow_cpu,
            instructions=instructions_counted(counted) if counted else None,
            count=count,
            drain=timed["last"] - timed["boot"],
            first=timed.get("first", timed["boot"]) - timed["boot"],
            cpu=timed["last_cpu"] - timed["boot_cpu"],
            cpu_closed=shutdown["cpu"] - timed["boot_cpu"] if "cpu" in shutdown else None,
            rabbitmq_cpu=rabbitmq if self.rabbitmq else None,
            relay_cpu=relay_cpu,
            threads=timed.get("threads", {}),
            system=timed.get("system", {}),
            hooks=timed.get("hooks"),
            gc=timed.get("gc", {}),
            at_last_ack={k: timed[k] for k in ("published", "dropped", "queued") if k in timed},
            at_shutdown=shutdown,
            **self.events(),
        )
        return run

    def events(self) -> dict[str, Any]:
        """What reached RabbitMQ: every event, each kind, and the drops the gaps report."""
        settled, last, still = time.monotonic(), -1, 0.0
        while still < 0.5 and time.monotonic() - settled < 10:
            now = self.held(self.ingest)
            still = still + 0.1 if now == last else 0.0
            last = now
            self.connection.sleep(0.1)
        # Every event, a batch message (a JSON array) counting as its events.
        kinds = dict.fromkeys(self.counters, 0)
        dropped = total = 0
        while True:
            method, _, body = self.channel.basic_get(self.ingest, auto_ack=True)
            if method is None:
                break
            try:
                decoded = json.loads(body)
            except ValueError:
                continue
            for event in decoded if isinstance(decoded, list) else [decoded]:
                total += 1
                kind = event.get("kind") if isinstance(event, dict) else None
                if kind in kinds:
                    kinds[kind] += 1
                if kind == "gap":
                    try:
                        dropped += int(event["body"]["dropped"])
                    except (KeyError, TypeError, ValueError):
                        pass
        last = total
        return {"events": last, "kinds": kinds, "gap_dropped": dropped}


def instructions_counted(logs: Path) -> int:
    """The instructions valgrind counted in the processes that logged to ``logs`` (the
    dramatiq command and its worker process)."""
    total = 0
    for log in logs.iterdir():
        for line in log.read_text(errors="replace").splitlines():
            _, found, count = line.partition("I   refs:")
            if found:
                total += int(count.strip().replace(",", ""))
    if not total:
        raise RuntimeError(f"valgrind counted nothing in {logs}")
    return total


def _output(process: subprocess.Popen[bytes]) -> str:
    """What an ended process printed (its last 3,000 characters)."""
    out = process.stdout.read() if process.stdout else b""
    return out.decode(errors="replace")[-3000:]


SHADOW_POLL = 0.01  # seconds between the shadow's looks at the worker's queue


def run_shadow(queue: str, count: int) -> int:
    """The shadow (``--shadow``): send a start and an ack event for each message a worker
    takes off ``queue``, as the middleware would (the same fields, through
    ``Publisher._note`` and a relay process), at the pace the queue empties. It says
    ``ready`` once its imports are done and its relay runs (the worker is started then, so
    that neither start overlaps the drain), and closes its publisher (every event
    confirmed) when its standard input ends (the bench has read its CPU and its relay's).
    Messages taken are ``count`` less those still ready: the worker's prefetch (a few
    dozen) counts as taken, a few ms early."""
    import pika

    from lifecycle.client import config, link
    from lifecycle.client.messages import BROKER_MARK
    from lifecycle.client.publisher import get_publisher

    link.in_worker = True  # LIFECYCLE_RELAY=auto hands the events to a relay, as a worker's
    publisher = get_publisher()
    publisher.start()
    prefix = os.environ.get("BENCH_SHADOW_TASKS", "bench-shadow-")
    pid = os.getpid()
    events = [
        (
            config.task_key(f"{prefix}{i}"),
            (
                BROKER_MARK,
                str(uuid.uuid4()),
                "noop",
                queue,
                1,
                pid,
                f"Thread-{i % THREADS + 2}",
                None,
            ),
        )
        for i in range(count)
    ]
    connection = pika.BlockingConnection(pika.URLParameters(config.amqp_url()))
    channel = connection.channel()
    publisher.flush(timeout=30)  # the relay started and connected
    print("ready", flush=True)
    sent = 0
    try:
        while sent < count:
            ready = channel.queue_declare(queue, passive=True).method.message_count
            for task, fields in events[sent : count - ready]:
                now = time.time()
                publisher._note(("broker", "start", task, None, now, None, fields))
                publisher._note(("broker", "ack", task, None, now, None, fields))
            sent = max(sent, count - ready)
            time.sleep(SHADOW_POLL)
    finally:
        connection.close()
        sys.stdin.read()  # until the bench is done measuring
        closed = publisher.close()
    print(f"shadow: {2 * count} events noted, closed {closed}", flush=True)
    return 0 if closed else 1


# -- worker-overhead ----------------------------------------------------------------------------


def bench_worker_overhead(
    sizes: tuple[int, ...] = SIZES,
    rounds: int = ROUNDS,
    variant: str = "full",
    pinned: bool = False,
    control: bool = True,
    shadow: bool = False,
    also: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Drain each size without and with the middleware, ``rounds`` times interleaved; with
    ``control``, the largest also with a middleware that does nothing (``empty``), in the
    same rounds: an A/A comparison, whose slowdown is the bench's own noise on this
    machine (and Dramatiq's cost of one more middleware); with ``shadow``, the largest also
    without the middleware beside a shadow that sends its events (``run_shadow``), and with
    each variant of ``also`` (what part of the price is whose, measured in the same rounds)."""
    bench = Bench()
    bench.variant = variant
    bench.pin = pinned
    bench.placed = Affinities()
    if pinned:
        bench.placed.place(bench.rabbitmq, OTHER_CPUS)
    runs: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            for count in sizes:
                # None: the control; "shadow": the shadow. Each round starts the rotation one
                # further along.
                drains: list[bool | str | None] = [False, True]
                if control and count == max(sizes) and variant != "empty":
                    drains.append(None)
                if shadow and count == max(sizes):
                    drains.append("shadow")
                if count == max(sizes):
                    drains += [f"also:{v}" for v in also if v != variant]
                for middleware in drains[r % len(drains) :] + drains[: r % len(drains)]:
                    if middleware is None:
                        run = bench.drain(count, True, variant="empty")
                    elif middleware == "shadow":
                        run = bench.drain(count, False, shadow=True)
                    elif isinstance(middleware, str):
                        run = bench.drain(count, True, variant=middleware.removeprefix("also:"))
                    else:
                        run = bench.drain(count, bool(middleware))
                    run["round"] = r + 1
                    runs.append(run)
                    print("  " + _run_line(run), flush=True)
    finally:
        bench.close()
        bench.placed.restore()
    result = {
        "sizes": sizes,
        "rounds": rounds,
        "variant": variant,
        "runs": runs,
        "by_size": _summarize(runs, sizes),
    }
    print(format_overhead(result), flush=True)
    return result


INSTRUCTION_SIZES = (1_000, 3_000)


def bench_worker_instructions(
    sizes: tuple[int, ...] = INSTRUCTION_SIZES, variants: tuple[str, ...] = ("full",)
) -> dict[str, Any]:
    """The worker's own work per message, counted: drains of two sizes without the
    middleware and with each variant, the worker process under valgrind (cachegrind,
    instructions only; the relay runs natively, RabbitMQ is not counted). Instructions per
    message are the difference between the two sizes over the difference in messages,
    which takes the boot and the stop away. Unlike the drain's wall time, the count does
    not move with what else the machine runs (the same code counts the same within a
    fraction of a percent), so it tells the middleware's own share of a message apart from
    the two cores' noise. Valgrind runs the threads one at a time, about ten times slower:
    the link thread's 20 ms rounds carry fewer events each than at full speed, which
    counts its share high; the wait for the GIL, a lock or a core is not counted at all.
    So the drains with the middleware run with the linger stretched as much as valgrind
    stretches the drain (measured: the largest drain without the middleware, natively and
    under valgrind), and its rounds carry as many events as at full speed."""
    from lifecycle.client.publisher import DEFAULT_LINGER

    small, large = min(sizes), max(sizes)
    bench = Bench()
    counts: dict[str, dict[int, int]] = {}
    try:
        native = min(bench.drain(large, False)["drain"] for _ in range(3))
        bench.instructions = True
        for name in ("without", *variants):
            for count in (small, large):
                if name == "without":
                    run = bench.drain(count, False)
                else:
                    run = bench.drain(count, True, variant=name)
                counts.setdefault(name, {})[count] = run["instructions"]
                if name == "without" and count == large:
                    dilation = run["drain"] / native
                    bench.linger = DEFAULT_LINGER * dilation
                    print(
                        f"  valgrind drains {dilation:.0f} times slower ({run['drain']:.1f} s"
                        f" against {native:.2f} s): the linger stretched to"
                        f" {bench.linger:.2f} s",
                        flush=True,
                    )
                line = f"  {name}, {count:,} messages: {run['instructions']:,} instructions"
                if run["middleware"] and name in ("full", "timed", "lazy"):
                    line += f"; events {run['events']:,} of {3 * count:,}"
                print(line, flush=True)
    finally:
        bench.close()
    per = {name: (c[large] - c[small]) / (large - small) for name, c in counts.items()}
    result = {
        "sizes": (small, large),
        "counts": counts,
        "per_message": per,
        "linger": bench.linger,
    }
    print(format_instructions(result), flush=True)
    return result


def format_instructions(result: dict[str, Any]) -> str:
    per = result["per_message"]
    small, large = result["sizes"]
    base = per["without"]
    lines = [
        "",
        f"worker-instructions: the worker process's instructions per message (valgrind,"
        f" drains of {small:,} and {large:,} messages, the difference), no-op actor,"
        f" 1 process x {THREADS} threads; the linger stretched to {result['linger']:.2f} s",
        "",
        "| worker | instructions per message | over the worker without |",
        "| --- | --- | --- |",
    ]
    for name, value in per.items():
        over = "" if name == "without" else f"{value - base:+,.0f} ({value / base - 1:+.1%})"
        lines.append(f"| {name} | {value:,.0f} | {over} |")
    if "full" in per:
        share = per["full"] / base - 1
        lines += [
            "",
            f"  target: the middleware's own work at most {TARGET_SLOWDOWN:.0%} of a no-op"
            f" message's (the slowdown's target, in instructions):"
            f" {_verdict(share <= TARGET_SLOWDOWN)} ({share:+.1%})",
        ]
    return "\n".join(lines)


def _per_message(seconds: float | None, count: int) -> str:
    return "?" if seconds is None else f"{seconds / count * 1e6:.0f}"


def _run_line(run: dict[str, Any]) -> str:
    count = run["count"]
    line = (
        f"round {run['round']}, {count:,} messages, "
        + (
            "with a middleware that does nothing (the control): "
            if run.get("control")
            else f"with the middleware's variant {run['also']}: "
            if run.get("also")
            else "without the middleware, beside the shadow sending its events: "
            if run.get("shadow")
            else f"{'with' if run['middleware'] else 'without'} the middleware: "
        )
        + f"{count / run['drain']:,.0f}/s ({run['drain']:.2f} s; CPU µs/message: worker"
        f" {_per_message(run['cpu'], count)}, until its publisher closed"
        f" {_per_message(run['cpu_closed'], count)}, RabbitMQ"
        f" {_per_message(run['rabbitmq_cpu'], count)}, relay process"
        f" {_per_message(run.get('relay_cpu'), count)}; by thread: "
        + ", ".join(f"{role} {_per_message(s, count)}" for role, s in run["threads"].items())
        + (
            " (of which in the kernel: "
            + ", ".join(f"{role} {_per_message(s, count)}" for role, s in system.items())
            + ")"
            if (system := run.get("system"))
            else ""
        )
        + (
            "; the middleware's hooks, timed in place: "
            f"{hooks['seconds'] / hooks['calls'] * 3e6:.1f} µs/message"
            f" ({hooks['calls']:,} hook calls timed)"
            if (hooks := run.get("hooks"))
            else ""
        )
        + (
            f"; the shadow process {_per_message(run['shadow_cpu'], count)}"
            if run.get("shadow")
            else ""
        )
        + f"; enqueued at {run['enqueue_rate']:,.0f}/s)"
        + (
            f"; garbage collector {_per_message(gc['seconds'], count)} µs/message"
            f" ({gc['gen0']:,} / {gc['gen1']:,} / {gc['gen2']:,} passes of generation 0 / 1 / 2)"
            if (gc := run.get("gc"))
            else ""
        )
    )
    if run.get("shadow"):
        line += f"; the shadow's events {run['events']:,} of {2 * count:,}"
    elif run["middleware"] and not run.get("control") and not run.get("also"):
        kinds = run["kinds"]
        line += (
            f"; events {run['events']:,} of {3 * count:,} (enqueue {kinds['enqueue']:,},"
            f" start {kinds['start']:,}, ack {kinds['ack']:,}), {kinds['gap']} gap events"
            f" telling of {run['gap_dropped']:,} dropped; the worker's publisher at the last"
            f" ack {run['at_last_ack']}, after its close {run['at_shutdown']}"
        )
    return line


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def median_interval(values: list[float], coverage: float = 0.9) -> tuple[float, float]:
    """Where the median of ``values`` lies, ``coverage`` of the time, by resampling them
    (a bootstrap, seeded: the same rounds print the same interval). Rounds that differ by
    tens of points give a wide interval: a median alone would hide it."""
    draw = random.Random(0)
    medians = sorted(statistics.median(draw.choices(values, k=len(values))) for _ in range(2000))
    tail = (1 - coverage) / 2
    return medians[int(tail * len(medians))], medians[int((1 - tail) * len(medians)) - 1]


def _against(
    plain: dict[int, dict[str, Any]], others: dict[int, dict[str, Any]]
) -> tuple[float, list[float], tuple[float, float]]:
    """Drains of another kind against those without the middleware of the same rounds: the
    median slowdown, each round's, and where the median lies 90 % of the time."""
    same = [others[k]["drain"] / plain[k]["drain"] for k in plain if k in others]
    low, high = median_interval(same)
    return statistics.median(same) - 1, [x - 1 for x in same], (low - 1, high - 1)


def _rounds(
    label: str, slowdown: float, slowdowns: list[float], interval: tuple[float, float], tail: str
) -> str:
    """One line of the summary: a kind of drain against those without, round by round."""
    low, high = interval
    rounds = ", ".join(f"{x:+.0%}" for x in slowdowns)
    return (
        f"  {label}: {slowdown:+.1%} (rounds {rounds}; within {low:+.0%} to {high:+.0%}, 90 %"
        f" of the time{tail}"
    )


def _summarize(runs: list[dict[str, Any]], sizes: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for count in sizes:
        plain = {
            r["round"]: r
            for r in runs
            if r["count"] == count and not r["middleware"] and not r.get("shadow")
        }
        shadows = {r["round"]: r for r in runs if r["count"] == count and r.get("shadow")}
        watched = {
            r["round"]: r
            for r in runs
            if r["count"] == count
            and r["middleware"]
            and not r.get("control")
            and not r.get("also")
        }
        controls = {r["round"]: r for r in runs if r["count"] == count and r.get("control")}
        pairs = [(plain[k], watched[k]) for k in plain if k in watched]
        ratios = [w["drain"] / p["drain"] for p, w in pairs]
        s: dict[str, Any] = {
            "without_rate": statistics.median(count / r["drain"] for r in plain.values()),
            "with_rate": statistics.median(count / r["drain"] for r in watched.values()),
            "slowdown": statistics.median(ratios) - 1,
            "slowdowns": [x - 1 for x in ratios],
            "slowdown_interval": tuple(x - 1 for x in median_interval(ratios)),
            "events": statistics.median(r["events"] for r in watched.values()),
            "events_range": (
                min(r["events"] for r in watched.values()),
                max(r["events"] for r in watched.values()),
            ),
            "kinds": {
                kind: statistics.median(r["kinds"][kind] for r in watched.values())
                for kind in KINDS
            },
            "gap_dropped": statistics.median(r["gap_dropped"] for r in watched.values()),
            "expected": 3 * count,
            # Events from a drain without our middleware (or the control's): must be 0.
            "stray": sum(r["events"] for r in (*plain.values(), *controls.values())),
        }
        for name, runs_of in (("without", plain), ("with", watched)):
            for figure in ("cpu", "cpu_closed", "rabbitmq_cpu", "relay_cpu"):
                seconds = _median([r[figure] for r in runs_of.values()])
                s[f"{name}_{figure}_us"] = None if seconds is None else seconds / count * 1e6
            for role in ROLES:
                seconds = _median([r["threads"].get(role, 0.0) for r in runs_of.values()])
                s[f"{name}_{role}_us"] = None if seconds is None else seconds / count * 1e6
            s[f"{name}_enqueue_rate"] = statistics.median(
                r["enqueue_rate"] for r in runs_of.values()
            )
        if controls:
            s["control"], s["controls"], s["control_interval"] = _against(plain, controls)
        for name in sorted({r["also"] for r in runs if r["count"] == count and r.get("also")}):
            of = {r["round"]: r for r in runs if r["count"] == count and r.get("also") == name}
            slowdown, slowdowns, interval = _against(plain, of)
            cpu = [of[k]["cpu"] / plain[k]["cpu"] for k in plain if k in of]
            s.setdefault("also", {})[name] = {
                "slowdown": slowdown,
                "slowdowns": slowdowns,
                "interval": interval,
                "cpu": statistics.median(cpu) - 1,
            }
        if shadows:
            s["shadow"], s["shadows"], s["shadow_interval"] = _against(plain, shadows)
            s["shadow_events"] = [r["events"] for r in shadows.values()]
            for figure in ("cpu", "rabbitmq_cpu", "relay_cpu", "shadow_cpu"):
                seconds = _median([r[figure] for r in shadows.values()])
                s[f"shadow_{figure}_us"] = None if seconds is None else seconds / count * 1e6
        without, with_ = s["without_cpu_us"], s["with_cpu_us"]
        s["cpu_slowdown"] = with_ / without - 1 if without and with_ is not None else None
        found[count] = s
    return found


def _us(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def format_overhead(result: dict[str, Any]) -> str:
    by_size = result["by_size"]
    lines = [
        "",
        f"worker-overhead: a no-op actor, 1 process x {THREADS} threads, "
        f"{result['rounds']} interleaved rounds, medians (rates: messages acked a second;"
        " CPU: µs per message, without / with)"
        + (
            ""
            if result.get("variant", "full") in ("full", "timed")
            else f"; variant {result['variant']}: the worker's publisher sends nothing"
        ),
        "",
        "| messages | worker without | worker with the middleware | worker CPU during the"
        " drain | worker CPU until its publisher closed | RabbitMQ CPU during the drain"
        " | relay process CPU during the drain"
        " | events that reached RabbitMQ (enqueue, start, ack) | gap events |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for count, s in by_size.items():
        kinds = s["kinds"]
        low, high = s["events_range"]
        spread = f", {low:,.0f} to {high:,.0f}" if low != high else ""
        lines.append(
            f"| {count:,} | {s['without_rate']:,.0f}/s | {s['with_rate']:,.0f}/s"
            f" (×{1 + s['slowdown']:.2f} the time; rounds "
            + ", ".join(f"{x:+.0%}" for x in s["slowdowns"])
            + ") | "
            + " | ".join(
                f"{_us(s[f'without_{f}_us'])} / {_us(s[f'with_{f}_us'])}"
                for f in ("cpu", "cpu_closed", "rabbitmq_cpu", "relay_cpu")
            )
            + f" | {s['events']:,.0f} of {s['expected']:,}{spread} ({kinds['enqueue']:,.0f},"
            f" {kinds['start']:,.0f}, {kinds['ack']:,.0f})"
            f" | {kinds['gap']:,.0f}, telling of {s['gap_dropped']:,.0f} dropped |"
        )
    lines += [
        "",
        "| messages | CPU per message in the worker, by thread: "
        + ", ".join(ROLES)
        + " (µs, without / with) | enqueued a second by the bench process (without / with) |",
        "| --- | --- | --- |",
    ]
    for count, s in by_size.items():
        lines.append(
            f"| {count:,} | "
            + ", ".join(f"{_us(s[f'without_{r}_us'])} / {_us(s[f'with_{r}_us'])}" for r in ROLES)
            + f" | {s['without_enqueue_rate']:,.0f}/s / {s['with_enqueue_rate']:,.0f}/s |"
        )
    largest = max(by_size)
    s = by_size[largest]
    complete = all(x["events"] == x["expected"] and not x["kinds"]["gap"] for x in by_size.values())
    low, high = s["slowdown_interval"]
    cpu = s.get("cpu_slowdown")
    lines += [
        "",
        f"  target: median slowdown at {largest:,} messages ≤ {TARGET_SLOWDOWN:.0%}:"
        f" {_verdict(s['slowdown'] <= TARGET_SLOWDOWN)} ({s['slowdown']:+.1%}; the median"
        f" lies within {low:+.0%} to {high:+.0%}, 90 % of the time, by resampling the"
        f" {len(s['slowdowns'])} rounds"
        + ("" if low <= TARGET_SLOWDOWN < high else ", on one side of the target")
        + ("" if cpu is None else f"; the worker's CPU per message {cpu:+.1%}")
        + ")",
        f"  target: every event reaches RabbitMQ, no gap: {_verdict(complete)}",
    ]
    if "control" in s:
        lines.insert(
            -1,
            _rounds(
                "control, the same rounds with a middleware that does nothing (Dramatiq's cost"
                " of one more, and this machine's noise)",
                s["control"],
                s["controls"],
                s["control_interval"],
                "): a slowdown inside that band is not told apart from none by this many rounds",
            ),
        )
    for name, a in s.get("also", {}).items():
        lines.insert(
            -1,
            _rounds(
                f"variant {name}, the same rounds",
                a["slowdown"],
                a["slowdowns"],
                a["interval"],
                f"; the worker's CPU per message {a['cpu']:+.1%})",
            ),
        )
    if "shadow" in s:
        lines.insert(
            -1,
            _rounds(
                "shadow, the same rounds without the middleware, its events sent at the"
                " worker's pace by another process (everything they cost but the worker's own"
                " share)",
                s["shadow"],
                s["shadows"],
                s["shadow_interval"],
                f"; CPU µs/message: the worker {_us(s['shadow_cpu_us'])}, RabbitMQ"
                f" {_us(s['shadow_rabbitmq_cpu_us'])}, the relay {_us(s['shadow_relay_cpu_us'])},"
                f" the shadow process {_us(s['shadow_shadow_cpu_us'])}; its events "
                + ", ".join(f"{n:,}" for n in s["shadow_events"])
                + f" of {2 * largest:,} each)",
            ),
        )
    if any(x["stray"] for x in by_size.values()):
        lines.append("  ERROR: events arrived from a run without the middleware")
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


# -- worker-profile -----------------------------------------------------------------------------

# Where the worker's CPU goes, each row a function's cumulative time (itself and what it
# calls) in one kind of thread, by the thread's own clock, summed over the row's functions:
# (file the function is in, its name) or ("~", part of a built-in's name). Where a name
# matches several functions (IOLoop.poll and PollPoller.poll), the outermost one counts.
Where = tuple[str, str]
HOOKS = tuple(
    ("client/dramatiq_middleware.py", name)
    for name in ("before_process_message", "after_process_message", "after_ack")
)
HOOKS_ROW = ("worker threads", "the middleware's hooks (start, ack events)")
CANDIDATES: tuple[tuple[str, str, tuple[Where, ...]], ...] = (
    (*HOOKS_ROW, HOOKS),
    (
        "worker threads",
        "  the body and its JSON (_body)",
        (("client/dramatiq_middleware.py", "_body"),),
    ),
    (
        "worker threads",
        "  the task key (the default and the prefix)",
        (("client/dramatiq_middleware.py", "_key"), ("lifecycle/client/config.py", "task_key")),
    ),
    (
        "worker threads",
        "  Publisher.emit: a lock, a ticket, an append",
        (("client/publisher.py", "emit"),),
    ),
    ("worker threads", "    waking the publisher thread", (("client/publisher.py", "_wake"),)),
    (
        "worker threads",
        "  contextvars (the task and attempt)",
        (("~", "of '_contextvars.ContextVar'"),),
    ),
    (
        "worker threads",
        "Dramatiq's process_message (the hooks included)",
        (("dramatiq/worker.py", "process_message"),),
    ),
    ("consumer threads", "the middleware's hooks", HOOKS),
    (
        "publisher thread",
        "a round: take, encode, send (_pump_once)",
        (("client/publisher.py", "_pump_once"),),
    ),
    ("publisher thread", "  encoding the events (_take)", (("client/publisher.py", "_take"),)),
    ("publisher thread", "    of it, uuids", (("client/messages.py", "__call__"),)),
    ("publisher thread", "    of it, times (_iso)", (("client/publisher.py", "_iso"),)),
    (
        "publisher thread",
        "  one message a batch (_send_batch)",
        (("client/publisher.py", "_send_batch"),),
    ),
    ("publisher thread", "    pika basic_publish", (("pika/channel.py", "basic_publish"),)),
    ("publisher thread", "confirms (_on_confirm)", (("client/publisher.py", "_on_confirm"),)),
    ("publisher thread", "the poller (IOLoop.poll)", (("select_connection.py", "poll"),)),
)
ROLES_PROFILED = ("worker threads", "consumer threads", "publisher thread")


def bench_worker_profile(count: int) -> dict[str, Any]:
    """Drain ``count`` messages without, then with, the middleware, every thread of the
    worker under cProfile by its own CPU clock; print where the CPU went, per message."""
    import pstats

    bench = Bench()
    found: dict[str, Any] = {"count": count}
    try:
        for middleware in (False, True):
            name = "with" if middleware else "without"
            directory = bench.tmp / f"profile-{name}"
            run = bench.drain(count, middleware, profile=directory)
            saved = Path(tempfile.gettempdir()) / f"bench-worker-profile-{name}"
            shutil.rmtree(saved, ignore_errors=True)
            shutil.copytree(directory, saved)
            stats = {
                role: pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
                for role in ROLES
                if (path := directory / f"{role}.prof").exists()
            }
            found[name] = {"run": run, "saved": str(saved), **_profile(stats)}
    finally:
        bench.close()
    print(format_profile(found), flush=True)
    return found


def _matches(key: tuple[str, int, str], where: Where) -> bool:
    path, _, name = key
    if where[0] == "~":
        return path == "~" and where[1] in name
    return path.endswith(where[0]) and name == where[1]


def _profile(stats: dict[str, dict[Any, Any]]) -> dict[str, Any]:
    """Total CPU per kind of thread, each candidate's, and the top functions by own time."""
    totals = {role: sum(v[2] for v in s.values()) for role, s in stats.items()}
    candidates = {}
    for role, label, wheres in CANDIDATES:
        entries = stats.get(role, {})
        candidates[(role, label)] = sum(
            max((v[3] for key, v in entries.items() if _matches(key, where)), default=0.0)
            for where in wheres
        )
    own = {
        role: sorted(
            (
                (v[2], f"{name} ({'/'.join(Path(path).parts[-2:])}:{line})")
                for (path, line, name), v in s.items()
            ),
            reverse=True,
        )[:12]
        for role, s in stats.items()
    }
    return {"totals": totals, "candidates": candidates, "own": own}


def format_profile(r: dict[str, Any]) -> str:
    count, without, with_ = r["count"], r["without"], r["with"]

    def us(seconds: float) -> str:
        return f"{seconds / count * 1e6:9.1f}"

    whole = sum(with_["totals"].values()) or 1.0
    lines = [
        "",
        f"worker-profile: {count:,} messages drained by 1 process x {THREADS} threads, every"
        " thread under cProfile timed by its own CPU clock (profiling inflates Python calls:"
        " read the shares, and the µs as relative). Profiles:"
        f" {without['saved']}, {with_['saved']} (python -m pstats)",
        f"  drained in {without['run']['drain']:.1f} s without, {with_['run']['drain']:.1f} s"
        " with the middleware (under the profiler)",
        "",
        f"  {'CPU per message, by thread (µs, profiled)':<58} {'without':>9} {'with':>9}"
        "  share with",
    ]
    for role in (*ROLES_PROFILED, "other threads"):
        a, b = without["totals"].get(role, 0.0), with_["totals"].get(role, 0.0)
        lines.append(f"  {role:<58} {us(a)} {us(b)}  {b / whole:6.1%}")
        for (crole, label), seconds in with_["candidates"].items():
            if crole == role:
                base = without["candidates"][(crole, label)]
                lines.append(f"    {label:<56} {us(base)} {us(seconds)}  {seconds / whole:6.1%}")
    a, b = sum(without["totals"].values()), whole
    lines.append(f"  {'the worker process':<58} {us(a)} {us(b)}  100.0%")
    for role in ("worker threads", "publisher thread"):
        lines.append(f"  with the middleware, {role}: top functions by own time (% of the process)")
        lines += [f"    {t / whole:6.1%}  {name}" for t, name in with_["own"].get(role, [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="bench.worker_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--messages", default=",".join(map(str, SIZES)))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--profile", action="store_true", help="one profiled drain instead")
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default="full",
        help="hooks, buffer: the worker's publisher sends nothing (the floor of the hooks)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the worker on CPU 0 alone; RabbitMQ and the relay on the others (taskset)",
    )
    parser.add_argument(
        "--no-control",
        action="store_true",
        help="no control rounds (a middleware that does nothing) at the largest size",
    )
    parser.add_argument(
        "--shadow",
        nargs="?",
        const="",
        metavar="QUEUE",
        help="shadow rounds at the largest size: no middleware, its events sent by another"
        " process at the worker's pace (with QUEUE: be that process, for --messages)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count the worker's instructions per message under valgrind instead (two sizes"
        " of --messages, default 1000,3000; --variant and --also)",
    )
    parser.add_argument(
        "--also",
        default="",
        metavar="VARIANTS",
        help="more variants (comma-separated) drained in the same rounds at the largest size",
    )
    options = parser.parse_args(argv)
    also = tuple(v for v in options.also.split(",") if v)
    for name in also:
        if name not in VARIANTS:
            parser.error(f"--also: {name!r} is not one of {', '.join(sorted(VARIANTS))}")
    sizes = tuple(int(x) for x in options.messages.split(","))
    if options.shadow:
        return run_shadow(options.shadow, max(sizes))
    if options.instructions:
        given = sizes if len(sizes) > 1 else INSTRUCTION_SIZES
        bench_worker_instructions(given, (options.variant, *also))
        return 0
    if options.profile:
        bench_worker_profile(max(sizes))
        return 0
    result = bench_worker_overhead(
        sizes,
        options.rounds,
        options.variant,
        options.pin,
        not options.no_control,
        options.shadow is not None,
        also,
    )
    return 0 if all(not s["stray"] for s in result["by_size"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
