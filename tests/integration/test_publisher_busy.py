"""The publisher on a busy system (issue 24, "Proof"): a burst past its buffer, a graceful
stop, RabbitMQ going away mid-burst, a nack, a returned message, and each task's order.

Only the publisher's public behaviour is asserted (``publish``, ``flush``, ``close``,
``stats``, and what reaches RabbitMQ or the store), so the tests hold for any way of
sending: each runs with the publisher's own thread and with a relay process. Delivery is
at least once: where a fault may make the publisher send an event again, an event counts
once, at its first arrival. Real RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pika
import pytest
from django.conf import settings

from lifecycle.client.config import exchange_name
from lifecycle.client.publisher import Publisher
from lifecycle.client.topology import ingest_queue
from lifecycle.models import Event
from tests.conftest import wait_for
from tests.integration.rabbit import message, proxied_url, queue_state
from tests.services import require_postgres, require_rabbitmq

require_postgres()
require_rabbitmq()

pytestmark = pytest.mark.integration

BUFFER = 10_000  # the default buffer (LIFECYCLE_BUFFER_EVENTS): the old publisher's ceiling
WORKER_THREADS = 8


def run_threads(count: int, work: Callable[[int], None]) -> list[threading.Thread]:
    """Start ``work(0)`` ... ``work(count - 1)`` in threads released together."""
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        work(index)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)


def uuids(sequence: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(e["uuid"] for e in sequence)


def arrived(tap: Callable[[], list[tuple[Any, Any, bytes]]], count: int) -> list[dict[str, Any]]:
    """Drain the tap until ``count`` events came (a resend may add more)."""
    got: list[dict[str, Any]] = []

    def enough() -> bool:
        got.extend(json.loads(body) for _, _, body in tap())
        return len({e["uuid"] for e in got}) >= count

    wait_for(enough, timeout=30, what=f"{count} events at the tap")
    time.sleep(0.2)  # anything sent twice is there too
    got.extend(json.loads(body) for _, _, body in tap())
    return got


def taken(
    channel: Any, queue: str, wanted: list[dict[str, Any]], timeout: float = 15.0
) -> list[dict[str, Any]]:
    """The events taken off a queue (a batch message as its events) until every one of
    ``wanted`` came."""
    got: list[dict[str, Any]] = []

    def enough() -> bool:
        while (delivery := channel.basic_get(queue, auto_ack=True))[0] is not None:
            found = json.loads(delivery[2])
            got.extend(e for e in (found if isinstance(found, list) else [found]) if "uuid" in e)
        return set(uuids(got)) >= set(uuids(wanted))

    wait_for(enough, timeout=timeout, what=f"{len(wanted)} events in {queue}")
    return got


def order_per_task(sequence: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """Each task's event numbers, in the order they were published or first arrived (an event
    sent again, which at-least-once delivery allows, counts where it first came)."""
    seen: set[str] = set()
    order: dict[str, list[int]] = {}
    for event in sequence:
        if event["uuid"] not in seen:
            seen.add(event["uuid"])
            order.setdefault(event["task"], []).append(event["body"]["n"])
    return order


def queue_exists(channel: Any, name: str) -> bool:
    probe = channel.connection.channel()  # a failed passive declare closes its channel
    try:
        probe.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    probe.close()
    return True


@pytest.fixture(params=[False, True], ids=["thread", "relay"])
def relay(request: pytest.FixtureRequest) -> bool:
    """Each test twice: the publisher sending from its own thread, and handing its events to
    a relay process (``lifecycle.client.relay``, what a Dramatiq worker process does)."""
    return bool(request.param)


@pytest.fixture
def namespace(channel: Any) -> Iterator[str]:
    """A namespace of this test alone (no tap routes its events), removed afterwards."""
    name = f"{settings.LIFECYCLE_NAMESPACE}-busy-{uuid.uuid4().hex[:8]}"
    yield name
    cleanup = channel.connection.channel()
    cleanup.queue_delete(ingest_queue(name))
    cleanup.exchange_delete(exchange_name(name))
    cleanup.close()


def test_a_burst_three_times_the_buffer_from_eight_worker_threads_drops_nothing(tap, relay):
    # Given a publisher with the default buffer, and 8 worker threads running messages as
    # fast as a busy Dramatiq worker does (3,000 to 5,000 a second on this machine's kind):
    # each reports enqueue and start, does its I/O (1.5 ms), reports ack; 30,000 events in
    # about 2.5 s, three times what the buffer holds. (Faster than that, on two cores shared
    # with other work, a relay gets only its fair share of a core while the threads are no
    # longer slowed by the publisher: what it cannot send in time is dropped and told.)
    # connected before the burst, as the middleware has it at the worker's boot (a relay
    # process still starting and connecting meanwhile would see the buffer fill first)
    publisher = Publisher(max_events=BUFFER, relay=relay)
    publisher.start()
    wait_for(lambda: publisher._connected, timeout=30, what="the publisher connected")
    sent: list[list[dict[str, Any]]] = [[] for _ in range(WORKER_THREADS)]

    def report(index: int, task: str, kind: str, n: int) -> None:
        event = message(task, kind, n=n)
        sent[index].append(event)
        publisher.publish(event)

    def worker(index: int) -> None:
        for n in range(BUFFER // WORKER_THREADS):  # 10,000 messages in all
            task = f"busy-burst-{index}-{n}"
            report(index, task, "enqueue", n)
            report(index, task, "start", n)
            time.sleep(0.0015)
            report(index, task, "ack", n)

    # When the burst runs
    join(run_threads(WORKER_THREADS, worker))

    # Then nothing was dropped: the publisher kept up, and every event arrives, once
    everything = [e for events in sent for e in events]
    assert len(everything) == 3 * BUFFER
    assert publisher.flush(30)
    stats = publisher.stats()
    assert (stats.dropped, stats.published, stats.queued) == (0, 3 * BUFFER, 0)
    assert uuids(arrived(tap, len(everything))) == uuids(everything)
    assert publisher.close(5)


def test_a_graceful_stop_sends_every_one_of_thousands_of_buffered_events(tap, rabbit_proxy, relay):
    # Given a connected publisher that buffers 5,000 events while RabbitMQ is away
    publisher = Publisher(url=proxied_url(rabbit_proxy), max_backoff=0.5, relay=relay)
    first = message("busy-stop-first", n=0)
    publisher.publish(first)
    assert publisher.flush(5)
    rabbit_proxy.cut()
    buffered = [message(f"busy-stop-{i % 40}", n=i) for i in range(5000)]
    for event in buffered:
        publisher.publish(event)
    assert publisher.stats().published == 1  # none of them could be confirmed

    # When RabbitMQ is back and the process stops at once
    rabbit_proxy.restore()
    assert publisher.close(30)

    # Then every buffered event arrives, once
    stats = publisher.stats()
    assert (stats.published, stats.dropped, stats.queued) == (5001, 0, 0)
    assert uuids(arrived(tap, 5001)) == uuids([first, *buffered])


def test_rabbitmq_down_mid_burst_loses_nothing_and_stores_nothing_twice(
    ingestor, rabbit_proxy, relay
):
    # Given 8 threads publishing 10,000 events of 40 tasks for about 2.5 s, and an ingestor
    publisher = Publisher(url=proxied_url(rabbit_proxy), max_backoff=0.5, relay=relay)
    sent: list[list[dict[str, Any]]] = [[] for _ in range(WORKER_THREADS)]

    def worker(index: int) -> None:
        for n in range(1250):
            event = message(f"busy-outage-{index}-{n % 5}", n=n // 5)
            sent[index].append(event)
            publisher.publish(event)
            time.sleep(0.002)

    threads = run_threads(WORKER_THREADS, worker)

    # When RabbitMQ goes away for a second in the middle of it
    wait_for(lambda: sum(map(len, sent)) >= 3000, what="the burst under way")
    rabbit_proxy.cut()
    assert all(thread.is_alive() for thread in threads)
    time.sleep(1.0)
    rabbit_proxy.restore()
    join(threads)

    # Then the publisher reconnected and sent everything
    assert publisher.flush(30)
    stats = publisher.stats()
    assert (stats.dropped, stats.queued) == (0, 0)
    assert rabbit_proxy.accepted >= 2
    publisher.close(5)
    # and every event is stored exactly once, each task's in the order they were published
    everything = [e for events in sent for e in events]
    tasks = {e["task"] for e in everything}

    def rows() -> list[dict[str, Any]]:
        found = Event.objects.filter(task_key__in=tasks).order_by("id")
        return [
            {"uuid": str(u), "task": task, "body": body}
            for u, task, body in found.values_list("uuid", "task_key", "body")
        ]

    wait_for(lambda: len(rows()) >= len(everything), timeout=30, what="every event stored")
    time.sleep(0.5)  # a duplicate would be stored by now
    stored = rows()
    assert uuids(stored) == uuids(everything)
    assert order_per_task(stored) == order_per_task(everything)


def test_a_nacked_message_is_sent_again(channel, namespace, relay):
    # Given an ingest queue that holds 5 messages and nacks more (reject-publish), full; the
    # publisher cannot declare it its own way and publishes to it anyway
    exchange, queue = exchange_name(namespace), ingest_queue(namespace)
    channel.exchange_declare(exchange, "topic", durable=True)
    channel.queue_declare(
        queue, durable=True, arguments={"x-max-length": 5, "x-overflow": "reject-publish"}
    )
    channel.queue_bind(queue, exchange, routing_key="#")
    for _ in range(5):
        channel.basic_publish(exchange, "filler", b"{}")
    wait_for(lambda: queue_state(channel, queue) == (5, 0), what="a full queue")
    publisher = Publisher(namespace=namespace, max_backoff=0.5, relay=relay)
    sent = [message(f"busy-nack-{i % 20}", n=i // 20) for i in range(3000)]
    for event in sent:
        publisher.publish(event)

    # When RabbitMQ nacks what it sends
    wait_for(lambda: publisher.stats().failed > 0, what="a nacked send")
    assert publisher.stats().published == 0
    assert queue_state(channel, queue)[0] == 5  # only the fillers: the rest was refused

    # Then, as the queue is drained, every event arrives, none dropped
    taken(channel, queue, sent, timeout=30)
    assert publisher.flush(5)
    stats = publisher.stats()
    assert (stats.published, stats.dropped, stats.queued) == (3000, 0, 0)
    publisher.close(5)


def test_a_returned_message_is_sent_again_once_the_queue_is_declared(channel, namespace, relay):
    # Given a publisher whose ingest queue received a first burst, then was deleted
    queue = ingest_queue(namespace)
    publisher = Publisher(namespace=namespace, max_backoff=0.5, relay=relay)
    first = [message(f"busy-return-{i % 10}", n=i // 10) for i in range(1000)]
    for event in first:
        publisher.publish(event)
    assert publisher.flush(10)
    assert uuids(taken(channel, queue, first)) == uuids(first)
    channel.queue_delete(queue)

    # When a second burst goes out, unroutable at first (mandatory: RabbitMQ returns it)
    second = [message(f"busy-return-{i % 10}", n=100 + i // 10) for i in range(1000)]
    for event in second:
        publisher.publish(event)

    # Then the publisher declares the queue again and every event arrives
    assert publisher.flush(15)
    assert queue_exists(channel, queue), "the publisher did not declare the ingest queue again"
    taken(channel, queue, second)
    stats = publisher.stats()
    assert (stats.published, stats.dropped, stats.queued) == (2000, 0, 0)
    publisher.close(5)


def test_each_tasks_events_arrive_in_the_order_they_were_published(tap, relay):
    # Given 8 threads, each publishing the numbered events of 3 tasks, interleaved, at once
    publisher = Publisher(relay=relay)
    sent: list[list[dict[str, Any]]] = [[] for _ in range(WORKER_THREADS)]

    def worker(index: int) -> None:
        for n in range(900):
            event = message(f"busy-order-{index}-{n % 3}", n=n // 3)
            sent[index].append(event)
            publisher.publish(event)

    join(run_threads(WORKER_THREADS, worker))

    # When they are sent
    assert publisher.flush(15)
    assert publisher.stats().dropped == 0

    # Then each task's 300 events arrive once each, in the order they were published
    everything = [e for events in sent for e in events]
    got = arrived(tap, len(everything))
    assert uuids(got) == uuids(everything)
    order = order_per_task(got)
    assert len(order) == 3 * WORKER_THREADS
    assert all(ns == list(range(300)) for ns in order.values()), {
        task: ns[:20] for task, ns in order.items() if ns != list(range(300))
    }
    publisher.close(5)


def hooked(middleware: Any, task: str, message_id: str) -> None:
    """One message through the Dramatiq middleware's hooks as a worker thread runs them:
    start, the actor returns, ack (start and ack go to the publisher without its lock)."""
    import dramatiq
    from dramatiq.brokers.rabbitmq import _RabbitmqMessage

    inner = dramatiq.Message(
        queue_name="busy",
        actor_name="work",
        args=(),
        kwargs={"task_id": task},
        options={},
        message_id=message_id,
    )
    proxy = _RabbitmqMessage(False, 1, inner)
    middleware.before_process_message(None, proxy)
    middleware.after_process_message(None, proxy)
    middleware.after_ack(None, proxy)


def test_hooks_and_emits_from_eight_threads_keep_each_tasks_order_without_a_flush(tap, relay):
    # Given 8 worker threads, each running messages of 3 tasks through the middleware's
    # hooks, each message's enqueue emitted before it (with the publisher's lock)
    from lifecycle.client.dramatiq_middleware import LifecycleEvents

    publisher = Publisher(max_events=BUFFER, relay=relay)
    middleware = LifecycleEvents(publisher=publisher)
    per_thread = 600
    publisher.emit("broker", "enqueue", "busy-hooks-warm", {"message_id": "warm"})
    assert publisher.flush(15)  # connected (its relay started), as a worker is at its boot

    def worker(index: int) -> None:
        for n in range(per_thread):
            task = f"busy-hooks-{index}-{n % 3}"
            publisher.emit("broker", "enqueue", task, {"message_id": f"m-{index}-{n}"})
            hooked(middleware, task, f"m-{index}-{n}")
            time.sleep(0.001)  # its I/O: a busy worker's pace (about 20,000 events/s in all)

    join(run_threads(WORKER_THREADS, worker))

    # Then, with no flush (an event left behind by a sleeping thread would never come),
    # every event arrives, and each task's go enqueue, start, ack, message after message
    expected = 3 * WORKER_THREADS * per_thread
    got = [e for e in arrived(tap, expected + 1) if e["task"] != "busy-hooks-warm"]
    assert middleware.errors == 0 and publisher.stats().dropped == 0
    seen: set[str] = set()
    steps: dict[str, list[tuple[str, str]]] = {}
    for event in got:
        if event["uuid"] not in seen:
            seen.add(event["uuid"])
            steps.setdefault(event["task"], []).append((event["body"]["message_id"], event["kind"]))
    assert len(seen) == expected and len(steps) == 3 * WORKER_THREADS
    for task, found in steps.items():
        index = int(task.split("-")[2])
        own = [n for n in range(per_thread) if f"busy-hooks-{index}-{n % 3}" == task]
        wanted = [(f"m-{index}-{n}", kind) for n in own for kind in ("enqueue", "start", "ack")]
        assert found == wanted, (task, found[:9])
    assert publisher.close(5)


def test_a_lone_start_and_ack_arrive_without_a_flush_while_the_thread_sleeps(tap, relay):
    # Given a publisher whose thread has gone to sleep between messages
    from lifecycle.client.dramatiq_middleware import LifecycleEvents

    publisher = Publisher(relay=relay)
    middleware = LifecycleEvents(publisher=publisher)
    publisher.start()
    for n in range(5):
        time.sleep(0.15)  # more than the linger: the thread is idle again
        # When one message runs
        hooked(middleware, f"busy-lone-{n}", f"lone-{n}")
        # Then its start and ack arrive, with nothing else published after them
        got = arrived(tap, 2)
        assert [(e["task"], e["kind"]) for e in got] == [
            (f"busy-lone-{n}", "start"),
            (f"busy-lone-{n}", "ack"),
        ]
    assert publisher.close(5)
