"""Benchmark the client's ``Publisher`` beside raw pika's floors, measured in one run (issue 24).

    python -m bench --only publisher [--publisher-events 5000] [--publisher-rounds 3]
    python -m bench.publisher [--events 5000] [--rounds 3] [--window 500] [--batch 50]

The same N schema-1 events (built with ``make_message`` and ``encode``, shaped like the
Dramatiq middleware's and the read reports' events, about 400 to 460 bytes) are sent five
ways to a namespace of its own (``<ns>-bench-publisher-<hex>``: its exchange and durable
ingest queue, declared by the benchmark and deleted at the end), each message persistent,
mandatory and with its ``message_id``, as the ``Publisher`` sends them:

- raw pika, ``BlockingConnection``, ``basic_publish`` without confirms (timed up to a
  round trip on the same channel after the last publish);
- raw pika, ``BlockingConnection`` with confirms, one message at a time (what the
  ``Publisher`` did when issue 24 was filed);
- raw pika, ``SelectConnection`` with confirms pipelined: at most ``--window`` (500)
  unconfirmed messages, acks and nacks with ``multiple`` matched to their delivery tags, a
  nacked or returned message sent again (the floor the targets are measured against);
- the same with ``--batch`` (50) events to a message, as a JSON array: context for a
  batching client (today's ingestor does not read arrays);
- ``lifecycle.client.publisher.Publisher``: ``publish()`` of each, then ``flush()`` until
  RabbitMQ confirmed them all; the rate is from the first ``publish()`` to the end of the
  flush, after a warm-up message (the connection and declarations are not timed). Its
  buffer holds all N, so that the rate is the sender's, not the buffer's.

For each: events a second, this process's CPU per event (``time.process_time``, every
thread) and RabbitMQ's (its ``beam.smp`` in ``/proc``, when it runs on this machine: on
two cores the broker's CPU is taken from the observed process). For the ``Publisher``,
the CPU of the calling thread per ``publish()`` (``time.thread_time`` around the loop of
calls: what an observed process's worker thread pays), beside what ``make_message`` costs
the caller before it. After each way the queue must hold exactly the messages sent (a
loss or a double is a failure), then it is purged. The ways run in rounds, in a rotating
order, and the figures are medians: the machine is shared and its speed drifts.

Targets (issue 24): the ``Publisher`` confirms at least 20,000 events/s, and at least half
of the pipelined floor measured in the same run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET_RATE = 20_000.0  # events a second, confirmed
TARGET_FLOOR_SHARE = 0.5  # of the pipelined-confirm floor
TARGET_READ_ADDED_MS = 2.0  # a confirmed read's p99, added by a busy publisher
TARGET_BACKGROUND = 5000  # events a second the same process publishes meanwhile
WINDOW = 500  # unconfirmed messages in flight, pipelined floor
ROUTING_KEY = "broker.start"

BATCH = 50  # events per AMQP message, batched floor
METHODS = (
    "no confirms",
    "blocking confirms",
    "pipelined confirms",
    "batched",
    "Publisher",
    "Publisher, relay",
)
LABELS = {
    "no confirms": "pika, no confirms (BlockingConnection)",
    "blocking confirms": "pika, confirms one at a time (BlockingConnection)",
    "pipelined confirms": "pika, confirms pipelined (SelectConnection, window {window})",
    "batched": "the same, {batch} events a message (a JSON array)",
    "Publisher": "Publisher: publish() each, then flush()",
    "Publisher, relay": "the same, handed to a relay process (its CPU counted)",
}


def bench_messages(count: int) -> list[dict[str, Any]]:
    """``count`` events as an observed system sends them: enqueue, start and ack of a task
    (the middleware's body), and every fourth an API read (``report_read``'s body)."""
    from lifecycle.client.messages import make_message

    pid = os.getpid()
    found: list[dict[str, Any]] = []
    task = str(uuid.uuid4())
    for i in range(count):
        if i % 4 == 3:
            found.append(
                make_message(
                    source="api",
                    kind="read",
                    task=task,
                    status="RUNNING",
                    body={
                        "xmin": 1_204_331 + i,
                        "snapshot": f"{1_204_300 + i}:{1_204_340 + i}:",
                        "client": "api-7f9c4d8b6d-x2kqp:4121",
                        "path": f"/api/v1/invoices/{task}/status",
                        "http_status": 200,
                        "cached": False,
                        "message_id": str(uuid.uuid4()),
                        "attempt": 1,
                    },
                )
            )
            continue
        if i % 4 == 0:
            task = str(uuid.uuid4())
        found.append(
            make_message(
                source="broker",
                kind=("enqueue", "start", "ack")[i % 4],
                task=task,
                body={
                    "message_id": str(uuid.uuid4()),
                    "actor": "billing.tasks.generate_invoice_pdf",
                    "queue": "billing.invoices",
                    "attempt": 1,
                    "pid": pid,
                    "thread": f"Thread-{i % 8 + 1}",
                    "redelivered": False,
                },
            )
        )
    return found


def rabbitmq_pids() -> list[int]:
    """RabbitMQ's Erlang VM on this machine, to read its CPU time (none if it runs elsewhere)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == "beam.smp":
                found.append(int(entry))
        except OSError:
            continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of these processes so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


# -- the ways ----------------------------------------------------------------------------


def _properties(message_id: str) -> Any:
    import pika

    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message_id,
    )


def _blocking(
    url: str, exchange: str, queue: str, bodies: list[tuple[bytes, str]], confirm: bool
) -> dict[str, float]:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        if confirm:
            channel.confirm_delivery()
        # Built beforehand in every way: the Publisher builds them on its own thread.
        props = [_properties(message_id) for _, message_id in bodies]
        cpu, start = time.process_time(), time.perf_counter()
        for (body, _), properties in zip(bodies, props, strict=True):
            channel.basic_publish(exchange, ROUTING_KEY, body, properties, mandatory=True)
        # Without confirms a publish only fills the socket: a round trip on the same channel
        # returns once RabbitMQ has handled everything sent before it.
        channel.queue_declare(queue, passive=True)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "cpu": time.process_time() - cpu}
    finally:
        connection.close()


class _Pipelined:
    """A ``SelectConnection`` that keeps ``window`` messages unconfirmed, matches acks and
    nacks (``multiple`` included) to delivery tags and sends a nacked or returned one again."""

    def __init__(self, url: str, exchange: str, bodies: list[tuple[bytes, str]], window: int):
        import pika

        self.exchange, self.bodies, self.window = exchange, bodies, window
        self.props = [_properties(message_id) for _, message_id in bodies]
        self.todo: collections.deque[int] = collections.deque(range(len(bodies)))
        self.unconfirmed: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.index = {message_id: i for i, (_, message_id) in enumerate(bodies)}
        self.returned: set[int] = set()
        self.tag = 0
        self.confirmed = self.nacked = self.resent = 0
        self.start = self.end = self.cpu = 0.0
        self.error: str | None = None
        self.channel: Any = None
        self.connection = pika.SelectConnection(
            pika.URLParameters(url),
            on_open_callback=lambda c: c.channel(on_open_callback=self._on_channel),
            on_open_error_callback=self._on_error,
            on_close_callback=lambda c, reason: c.ioloop.stop(),
        )

    def run(self) -> dict[str, float]:
        self.connection.ioloop.start()
        if self.error or self.confirmed < len(self.bodies):
            raise RuntimeError(f"pipelined floor: {self.error or 'not every message confirmed'}")
        return {
            "seconds": self.end - self.start,
            "cpu": self.cpu,
            "nacked": self.nacked,
            "resent": self.resent,
        }

    def _on_error(self, connection: Any, error: Any) -> None:
        self.error = repr(error)
        connection.ioloop.stop()

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, frame: Any) -> None:
        self.cpu, self.start = time.process_time(), time.perf_counter()
        self._fill()

    def _fill(self) -> None:
        while self.todo and len(self.unconfirmed) < self.window:
            index = self.todo.popleft()
            self.channel.basic_publish(
                self.exchange, ROUTING_KEY, self.bodies[index][0], self.props[index], True
            )
            self.tag += 1
            self.unconfirmed[self.tag] = index

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        # A returned message is confirmed (acked) after its return: send it again then.
        self.returned.add(self.index[properties.message_id])

    def _on_confirm(self, frame: Any) -> None:
        import pika

        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        tags = [method.delivery_tag]
        if method.multiple:  # every unconfirmed tag up to this one, oldest first
            tags = []
            for tag in self.unconfirmed:
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        for tag in tags:
            index = self.unconfirmed.pop(tag, None)
            if index is None:
                continue
            if ack and index not in self.returned:
                self.confirmed += 1
                continue
            self.nacked += not ack
            self.resent += 1
            self.returned.discard(index)
            self.todo.append(index)
        if self.confirmed == len(self.bodies):
            self.end, self.cpu = time.perf_counter(), time.process_time() - self.cpu
            self.connection.close()
            return
        self._fill()


def _pipelined(
    url: str, exchange: str, queue: str, bodies: list[tuple[bytes, str]], window: int
) -> dict[str, float]:
    return _Pipelined(url, exchange, bodies, window).run()


def _publisher(
    url: str,
    namespace: str,
    messages: list[dict[str, Any]],
    purge: Callable[[], None],
    relay: bool = False,
) -> dict[str, float]:
    from lifecycle.client.messages import make_message
    from lifecycle.client.publisher import DEFAULT_BUFFER_EVENTS, Publisher

    publisher = Publisher(
        url=url,
        namespace=namespace,
        max_events=max(len(messages), DEFAULT_BUFFER_EVENTS) + 1,
        max_bytes=2**31,
        relay=relay,
    )
    try:
        # The connection and its declarations are made before the timing starts.
        publisher.publish(make_message(source="broker", kind="start", task="bench-warm-up"))
        if not publisher.flush(timeout=30):
            raise RuntimeError("Publisher: the warm-up message was not confirmed in 30 s")
        purge()
        before = publisher.stats()
        link = publisher._link
        helper = [link.process.pid] if link is not None and link.process is not None else []
        helper_cpu = cpu_seconds(helper)
        cpu, start, caller = time.process_time(), time.perf_counter(), time.thread_time()
        for message in messages:
            publisher.publish(message)
        caller = time.thread_time() - caller
        queued = time.perf_counter() - start
        flushed = publisher.flush(timeout=max(60.0, len(messages) / 200))
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu + cpu_seconds(helper) - helper_cpu
        after = publisher.stats()
    finally:
        publisher.close(timeout=5)
    if not flushed:
        raise RuntimeError(f"Publisher: flush timed out ({after})")
    return {
        "seconds": seconds,
        "cpu": cpu,
        "caller": caller,
        "queued": queued,
        "dropped": after.dropped - before.dropped,
        "failed": after.failed - before.failed,
    }


def _make_message_cost(count: int) -> float:
    """CPU seconds of the calling thread per ``make_message`` like the middleware's."""
    from lifecycle.client.messages import make_message

    body = {"message_id": "", "actor": "a", "queue": "q", "attempt": 1, "pid": 1, "thread": "T"}
    cpu = time.thread_time()
    for _ in range(count):
        make_message(source="broker", kind="start", task="t", body=dict(body))
    return (time.thread_time() - cpu) / count


def _encode_cost(messages: list[dict[str, Any]]) -> float:
    from lifecycle.client.messages import encode

    cpu = time.thread_time()
    for message in messages:
        encode(message)
    return (time.thread_time() - cpu) / len(messages)


def _emit_cost(url: str, namespace: str, count: int) -> float:
    """CPU seconds of the calling thread per ``Publisher.emit`` of a middleware's event (its
    body made once per message, as the middleware does), everything sent by the end."""
    from lifecycle.client.publisher import Publisher

    publisher = Publisher(url=url, namespace=namespace, max_events=count + 1)
    body = {"message_id": "m", "actor": "a", "queue": "q", "attempt": 1, "pid": 1, "thread": "T"}
    try:
        cpu = time.thread_time()
        for n in range(count):
            publisher.emit("broker", "start", f"bench-emit-{n % 100}", body)
        cpu = time.thread_time() - cpu
        publisher.flush(timeout=60)
    finally:
        publisher.close(timeout=5)
    return cpu / count


def bench_confirmed_reads(
    url: str, namespace: str, reads: int = 400, background: int = TARGET_BACKGROUND
) -> dict[str, Any]:
    """A read reported with ``confirm=`` (``publish``, then ``wait`` for its ticket), ``reads``
    times at 200 a second: alone, then while another thread of the same process publishes
    ``background`` events a second. Latency of each, from ``publish`` to its confirm."""
    found: dict[str, Any] = {"background": background, "reads": reads}
    found["alone"] = _confirmed_reads(url, namespace, reads, 0)
    found["loaded"] = _confirmed_reads(url, namespace, reads, background)
    found["added_p99"] = found["loaded"]["p99"] - found["alone"]["p99"]
    found["met"] = found["added_p99"] <= TARGET_READ_ADDED_MS and not (
        found["alone"]["timeouts"] or found["loaded"]["timeouts"]
    )
    return found


def _confirmed_reads(url: str, namespace: str, reads: int, rate: int) -> dict[str, Any]:
    import threading

    from lifecycle.client.messages import make_message
    from lifecycle.client.publisher import Publisher

    publisher = Publisher(url=url, namespace=namespace)
    stop = threading.Event()
    sent = 0

    def noise() -> None:
        nonlocal sent
        body = {"message_id": "m", "actor": "bench", "queue": "q", "attempt": 1}
        start = time.perf_counter()
        while not stop.is_set():
            due = int((time.perf_counter() - start) * rate)
            while sent < due:
                publisher.emit("broker", "start", f"bench-noise-{sent % 500}", body)
                sent += 1
            time.sleep(0.001)

    thread = threading.Thread(target=noise, daemon=True)
    try:
        publisher.publish(make_message(source="api", kind="read", task="bench-warm-up"))
        publisher.flush(timeout=30)
        if rate:
            thread.start()
            time.sleep(1.0)  # the background runs at its pace before the first read
        latencies, timeouts = [], 0
        for n in range(reads):
            message = make_message(source="api", kind="read", task=f"bench-read-{n}")
            start = time.perf_counter()
            timeouts += not publisher.wait(publisher.publish(message), timeout=1.0)
            latencies.append((time.perf_counter() - start) * 1000)
            time.sleep(0.005)
    finally:
        stop.set()
        if rate:
            thread.join()
        publisher.close(timeout=10)
    latencies.sort()
    return {
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max": latencies[-1],
        "timeouts": timeouts,
        "sent": sent,
        "dropped": publisher.stats().dropped,
    }


def format_confirmed_reads(r: dict[str, Any]) -> str:
    alone, loaded = r["alone"], r["loaded"]
    return "\n".join(
        [
            f"confirmed reads: {r['reads']} reads reported with confirm= (publish, then wait for"
            " its ticket), from publish to confirm, ms:",
            f"  alone                                      p50 {alone['p50']:5.2f}"
            f"  p99 {alone['p99']:5.2f}  max {alone['max']:6.2f}  timeouts {alone['timeouts']}",
            f"  while the process publishes {r['background']:,}/s  p50 {loaded['p50']:5.2f}"
            f"  p99 {loaded['p99']:5.2f}  max {loaded['max']:6.2f}  timeouts {loaded['timeouts']}"
            f"  ({loaded['sent']:,} background events, {loaded['dropped']} dropped)",
            f"  target: at most {TARGET_READ_ADDED_MS:g} ms added at p99: {_verdict(r['met'])}"
            f" ({r['added_p99']:+.2f} ms)",
        ]
    )


# -- the run ----------------------------------------------------------------------------------


def bench_publisher(
    count: int, rounds: int = 3, window: int = WINDOW, batch: int = BATCH
) -> dict[str, Any]:
    """Send ``count`` events each way, ``rounds`` times; print and return the figures."""
    import pika

    from lifecycle.client import config, topology
    from lifecycle.client.messages import encode

    url = config.amqp_url()
    namespace = f"{config.namespace()}-bench-publisher-{uuid.uuid4().hex[:8]}"
    exchange, queue = config.exchange_name(namespace), topology.ingest_queue(namespace)
    messages = bench_messages(count)
    bodies = [(encode(m), str(m["uuid"])) for m in messages]
    sizes = [len(b) for b, _ in bodies]
    batches = [
        (b"[" + b",".join(body for body, _ in bodies[i : i + batch]) + b"]", str(uuid.uuid4()))
        for i in range(0, count, batch)
    ]
    rabbitmq = rabbitmq_pids()
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    lost: list[str] = []

    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    try:
        topology.declare(channel, namespace)

        def purge() -> None:
            channel.queue_purge(queue)

        def stored(expected: int) -> int:
            deadline = time.monotonic() + 10
            while True:
                held = channel.queue_declare(queue, passive=True).method.message_count
                if held >= expected or time.monotonic() > deadline:
                    return int(held)
                connection.sleep(0.05)

        def events_held(expected: int) -> int:
            """The events in the queue, a batch message counting as its events (drained)."""
            deadline, found = time.monotonic() + 10, 0
            while found < expected and time.monotonic() < deadline:
                method, _, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    connection.sleep(0.05)
                    continue
                found += len(json.loads(body)) if body[:1] == b"[" else 1
            return found

        ways: dict[str, Callable[[], dict[str, float]]] = {
            "no confirms": lambda: _blocking(url, exchange, queue, bodies, False),
            "blocking confirms": lambda: _blocking(url, exchange, queue, bodies, True),
            "pipelined confirms": lambda: _pipelined(url, exchange, queue, bodies, window),
            "batched": lambda: _pipelined(url, exchange, queue, batches, window),
            "Publisher": lambda: _publisher(url, namespace, messages, purge),
            "Publisher, relay": lambda: _publisher(url, namespace, messages, purge, relay=True),
        }
        for r in range(rounds):
            order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
            line = []
            for method in order:
                purge()
                broker_cpu = cpu_seconds(rabbitmq)
                one = ways[method]()
                one["rabbitmq"] = cpu_seconds(rabbitmq) - broker_cpu
                expected = len(batches) if method == "batched" else count
                ours = method.startswith("Publisher")
                one["stored"] = events_held(expected) if ours else stored(expected)
                if one["stored"] != expected:
                    what = "events" if ours else "messages"
                    lost.append(f"{method}: {one['stored']} of {expected} {what} in the queue")
                runs[method].append(one)
                line.append(f"{method} {count / one['seconds']:,.0f}/s")
            print(f"  round {r + 1}: " + ", ".join(line), flush=True)
            connection.process_data_events(0)  # heartbeats of the counting connection
        purge()
    finally:
        try:
            channel.queue_delete(queue)
            channel.exchange_delete(exchange)
        finally:
            connection.close()

    result = _summarize(runs, count, window)
    result.update(
        {
            "events": count,
            "rounds": rounds,
            "window": window,
            "batch": batch,
            "rabbitmq": bool(rabbitmq),
            "sizes": (min(sizes), statistics.mean(sizes), max(sizes)),
            "make_message_us": _make_message_cost(count) * 1e6,
            "encode_us": _encode_cost(messages) * 1e6,
            "lost": lost,
        }
    )
    print(format_result(result), flush=True)
    try:
        topology_channel = pika.BlockingConnection(pika.URLParameters(url))
        topology.declare(topology_channel.channel(), namespace)
        result["emit_us"] = _emit_cost(url, namespace, count) * 1e6
        print(
            f"  Publisher.emit() (what the Dramatiq middleware calls), calling thread's CPU:"
            f" {result['emit_us']:.1f} µs per event",
            flush=True,
        )
        result["reads"] = bench_confirmed_reads(url, namespace)
        print(format_confirmed_reads(result["reads"]), flush=True)
    finally:
        channel = topology_channel.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
        topology_channel.close()
    return result


def _summarize(runs: dict[str, list[dict[str, float]]], count: int, window: int) -> dict[str, Any]:
    rates = {m: [count / r["seconds"] for r in rs] for m, rs in runs.items()}
    found: dict[str, Any] = {
        "rate": {m: statistics.median(r) for m, r in rates.items()},
        "range": {m: (min(r), max(r)) for m, r in rates.items()},
        "cpu_us": {
            m: statistics.median(r["cpu"] / count * 1e6 for r in rs) for m, rs in runs.items()
        },
        "rabbitmq_us": {
            m: statistics.median(r["rabbitmq"] / count * 1e6 for r in rs) for m, rs in runs.items()
        },
    }
    ours = runs["Publisher"]
    found["caller_us"] = statistics.median(r["caller"] / count * 1e6 for r in ours)
    relayed = runs["Publisher, relay"]
    found["relay_caller_us"] = statistics.median(r["caller"] / count * 1e6 for r in relayed)
    found["dropped"] = sum(int(r["dropped"]) for r in [*ours, *relayed])
    found["failed"] = sum(int(r["failed"]) for r in [*ours, *relayed])
    found["resent"] = sum(
        int(r.get("resent", 0)) for m in ("pipelined confirms", "batched") for r in runs[m]
    )
    floor = found["rate"]["pipelined confirms"]
    rate = found["rate"]["Publisher"]
    relay_rate = found["rate"]["Publisher, relay"]
    found["met_rate"] = min(rate, relay_rate) >= TARGET_RATE
    found["met_share"] = min(rate, relay_rate) >= TARGET_FLOOR_SHARE * floor
    return found


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def format_result(r: dict[str, Any]) -> str:
    low, mean, high = r["sizes"]
    lines = [
        f"publisher: {r['events']:,} events of {low}-{high} bytes (mean {mean:.0f}), "
        f"{r['rounds']} rounds in rotating order; median (min-max) events/s, and CPU µs per"
        " event of this process (every thread) and of RabbitMQ:",
    ]
    for method in METHODS:
        label = LABELS[method].format(window=r["window"], batch=r["batch"])
        lo, hi = r["range"][method]
        broker = f"{r['rabbitmq_us'][method]:6.1f}" if r["rabbitmq"] else "     ?"
        lines.append(
            f"  {label:<58} {r['rate'][method]:>9,.0f}/s  ({lo:,.0f}-{hi:,.0f})"
            f"  CPU {r['cpu_us'][method]:6.1f}, RabbitMQ {broker}"
        )
    floor = r["rate"]["pipelined confirms"]
    rate = min(r["rate"]["Publisher"], r["rate"]["Publisher, relay"])
    lines += [
        f"  Publisher, calling thread's CPU per publish(): {r['caller_us']:.1f} µs (the"
        f" publisher's thread encodes; the caller's make_message() costs"
        f" {r['make_message_us']:.1f} µs more; encode() alone {r['encode_us']:.1f} µs);"
        f" with a relay {r['relay_caller_us']:.1f} µs",
        f"  Publisher: dropped {r['dropped']}, failed sends {r['failed']};"
        f" pipelined floors: {r['resent']} nacked or returned and sent again",
        f"  target ≥ {TARGET_RATE:,.0f} events/s confirmed, both ways:"
        f" {_verdict(r['met_rate'])} ({rate:,.0f}/s, the slower)",
        f"  target ≥ {TARGET_FLOOR_SHARE:.0%} of the pipelined floor ({floor:,.0f}/s, so"
        f" ≥ {TARGET_FLOOR_SHARE * floor:,.0f}/s): {_verdict(r['met_share'])}"
        f" ({rate / floor:.1%})",
    ]
    lines += [f"  LOST: {line}" for line in r["lost"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.publisher", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events sent each way")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the five ways")
    parser.add_argument("--window", type=int, default=WINDOW, help="pipelined floors' window")
    parser.add_argument("--batch", type=int, default=BATCH, help="events a batched message")
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    result = bench_publisher(options.events, options.rounds, options.window, options.batch)
    return 1 if result["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
