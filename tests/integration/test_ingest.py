"""Capture over RabbitMQ, end to end: the publisher, the Dramatiq middleware, the log
handler, and the ingestor that stores events (once) or dead-letters them (with a reason).

Real PostgreSQL and RabbitMQ; every RabbitMQ name is under ``LIFECYCLE_NAMESPACE``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dramatiq
import pika
import pytest
from django.conf import settings
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import default_middleware

from lifecycle import events
from lifecycle.client.config import exchange_name
from lifecycle.client.context import current_task, task_context
from lifecycle.client.dramatiq_middleware import LifecycleEvents
from lifecycle.client.logs import MAX_EXCEPTION_CHARS, LifecycleLogHandler
from lifecycle.client.publisher import Publisher
from lifecycle.ingest import (
    REASON_HEADER,
    Ingestor,
    database_conninfo,
    dead_queue_name,
    ingest_queue_name,
)
from lifecycle.models import Event
from tests.conftest import wait_for
from tests.integration.rabbit import message, proxied_url, queue_state
from tests.published import Published
from tests.services import require_postgres, require_rabbitmq

require_postgres()
require_rabbitmq()

pytestmark = pytest.mark.integration


def publish_raw(channel: Any, body: bytes, routing_key: str = "broker.enqueue") -> None:
    channel.basic_publish(exchange_name(), routing_key, body, pika.BasicProperties(delivery_mode=2))


def stored(uuids: list[str]) -> Counter[str]:
    return Counter(
        str(u) for u in Event.objects.filter(uuid__in=uuids).values_list("uuid", flat=True)
    )


# -- the ingestor --------------------------------------------------------------------------


def test_good_events_are_stored_once_and_malformed_ones_dead_lettered(ingestor, channel):
    # Given good messages interleaved with malformed ones
    good = [message(f"ingest-{i}", n=i) for i in range(7)]
    missing_kind = message("ingest-bad")
    del missing_kind["kind"]
    malformed = [
        (b"{this is not json", "not JSON"),
        (events.encode(missing_kind), "missing field 'kind'"),
        (events.encode(message("ingest-bad", kind="explode")), "unknown kind 'explode'"),
        (events.encode(message("ingest-bad", pad="x" * 70_000)), "over the 65536 limit"),
        (b"[" * 30_000 + b"]" * 30_000, "cannot parse: RecursionError"),
    ]
    stream = [events.encode(good[0])]
    for (raw, _), g in zip(malformed, good[1:6], strict=True):
        stream += [raw, events.encode(g)]

    # When they are published, then a good one is redelivered (twice, in one later batch)
    for raw in stream:
        publish_raw(channel, raw)
    uuids = [g["uuid"] for g in good]
    wait_for(lambda: sum(stored(uuids).values()) == 6, what="the six good events")
    for _ in range(2):
        publish_raw(channel, events.encode(good[1]))
    publish_raw(channel, events.encode(good[6]))  # a marker after the duplicates
    wait_for(lambda: stored(uuids)[good[6]["uuid"]], what="the event after the duplicates")

    # Then every good event is stored exactly once, with its fields
    assert stored(uuids) == Counter(uuids)
    row = Event.objects.get(uuid=good[3]["uuid"])
    assert (row.source, row.kind, row.task_key, row.body) == (
        "broker",
        "enqueue",
        "ingest-3",
        {"n": 3},
    )
    assert row.received_at >= row.at

    # and each malformed message is in the dead-letter queue, intact, with its reason
    wait_for(
        lambda: queue_state(channel, dead_queue_name())[0] == len(malformed), what="dead letters"
    )
    dead = [channel.basic_get(dead_queue_name(), auto_ack=True) for _ in malformed]
    for (_, properties, body), (raw, reason) in zip(dead, malformed, strict=True):
        assert body == raw
        assert reason in properties.headers[REASON_HEADER]
        assert properties.headers["x-lifecycle-routing-key"] == "broker.enqueue"

    # and the ingestor is still running, with nothing left unacked
    assert ingestor.poll() is None
    assert queue_state(channel, ingest_queue_name())[0] == 0


def test_the_ingestor_stops_gracefully_on_sigterm(ingestor, channel):
    good = message("ingest-stop")
    publish_raw(channel, events.encode(good))
    wait_for(lambda: stored([good["uuid"]]), what="the event")

    ingestor.send_signal(signal.SIGTERM)

    assert ingestor.wait(15) == 0
    text = Path(ingestor.log.name).read_text()
    assert "SIGTERM received, finishing the current batch" in text
    assert "ingest: stopped; received 1, stored 1" in text


def run_in_thread(ingestor: Ingestor, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=ingestor.run, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_nothing_is_acked_while_the_database_is_down(channel):
    # Given an ingestor whose database refuses connections
    # (in a thread: the test needs to see its counters and swap its database)
    down = Ingestor(conninfo="host=127.0.0.1 port=1 dbname=x connect_timeout=1", batch_ms=20)
    thread = run_in_thread(down)
    wait_for(lambda: queue_state(channel, ingest_queue_name())[1] == 1, what="the consumer")

    # When events arrive, they are retried, not stored and not acked
    good = [message(f"ingest-down-{i}") for i in range(3)]
    for m in good:
        publish_raw(channel, events.encode(m))
    wait_for(lambda: down.stats.db_retries >= 2, what="database retries")
    assert down.stats.stored == 0
    down.stop()
    thread.join(15)
    assert not thread.is_alive()
    # Then stopping gives them back to the queue: nothing was lost
    wait_for(lambda: queue_state(channel, ingest_queue_name()) == (3, 0), what="requeued events")

    # and an ingestor with a working database stores them
    up = Ingestor(conninfo=database_conninfo(), batch_ms=20)
    run_in_thread(up, until=lambda s: s.stored >= 3).join(15)
    assert stored([m["uuid"] for m in good]) == Counter(m["uuid"] for m in good)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["copy", "executemany"])
def test_values_the_database_rejects_cost_only_their_own_event(channel, method):
    # Given a batch where one event is valid JSON the database refuses (a NUL in text)
    good = [message(f"ingest-nul-{i}") for i in range(3)]
    bad = message("ingest-nul-bad", note="a\u0000b")
    for raw in [good[0], bad, good[1], good[2]]:
        publish_raw(channel, events.encode(raw))

    ingestor = Ingestor(conninfo=database_conninfo(), batch_ms=200, method=method)
    run_in_thread(ingestor, until=lambda s: s.received >= 4).join(15)

    # Then the good ones are stored and the bad one is dead-lettered with the schema's reason
    assert stored([m["uuid"] for m in good]) == Counter(m["uuid"] for m in good)
    assert (ingestor.stats.stored, ingestor.stats.dead) == (3, 1)
    _, properties, body = channel.basic_get(dead_queue_name(), auto_ack=True)
    assert body == events.encode(bad)
    assert properties.headers[REASON_HEADER] == "body holds a NUL character"


@pytest.mark.django_db(transaction=True)
def test_a_batch_message_stores_its_events_in_order_and_dead_letters_each_bad_one_alone(
    channel,
):
    # Given a publisher's batch: one message holding a JSON array of events, among them an
    # unknown kind, one the database refuses, and one sent before; then a single event
    task = "ingest-batch"
    first = message(task, n=0)
    publish_raw(channel, events.encode(first))
    batch = [
        message(task, n=1),
        message(task, kind="explode"),
        message(task, n=2),
        message(task, note="a\u0000b"),
        first,
        message(task, n=3),
    ]
    publish_raw(channel, json.dumps(batch).encode())
    after = message(task, n=4)
    publish_raw(channel, events.encode(after))

    # When the ingestor takes them
    ingestor = Ingestor(conninfo=database_conninfo(), batch_ms=200)
    run_in_thread(ingestor, until=lambda s: s.received >= 8).join(15)

    # Then the good events are stored once, in the order they were published
    rows = list(Event.objects.filter(task_key=task).order_by("id").values_list("body", flat=True))
    assert [b.get("n") for b in rows] == [0, 1, 2, 3, 4]
    assert (ingestor.stats.received, ingestor.stats.stored, ingestor.stats.dead) == (8, 5, 2)
    # And each bad one is a dead letter of its own, with its reason
    dead = [channel.basic_get(dead_queue_name(), auto_ack=True) for _ in range(2)]
    assert [json.loads(body)["uuid"] for _, _, body in dead] == [batch[1]["uuid"], batch[3]["uuid"]]
    reasons = [properties.headers[REASON_HEADER] for _, properties, _ in dead]
    assert reasons[0].startswith("event 1 of a batch of 6: unknown kind 'explode'")
    assert reasons[1] == "event 3 of a batch of 6: body holds a NUL character"


@pytest.mark.django_db(transaction=True)
def test_a_nul_or_a_lone_surrogate_in_a_batch_costs_only_its_event_and_one_log_line(
    channel, caplog
):
    # Given a publisher's batch whose second event's key holds a NUL, and whose fourth
    # event's body holds a lone surrogate: escaped ("\ud800"), or raw (its UTF-8 bytes,
    # which json decodes with surrogatepass)
    task = f"ingest-hostile-{uuid.uuid4()}"
    batch = [message(task, n=n) for n in range(6)]
    batch[1]["task"] = f"{task}\u0000"
    batch[3]["body"] = {"note": "PLACEHOLDER"}
    batch[4]["body"] = {"note": "PLACEHOLDER"}
    raw = json.dumps(batch).encode()
    raw = raw.replace(b'"PLACEHOLDER"', b'"\\ud800"', 1).replace(b"PLACEHOLDER", b"\xed\xa0\x80")
    publish_raw(channel, raw, routing_key="batch")

    # When the ingestor takes it
    ingestor = Ingestor(conninfo=database_conninfo(), batch_ms=200)
    with caplog.at_level(logging.WARNING, logger="lifecycle.ingest"):
        run_in_thread(ingestor, until=lambda s: s.received >= 6).join(15)

    # Then the three good events are stored, and each bad one is a dead letter of its own
    rows = Event.objects.filter(task_key=task).order_by("id").values_list("body", flat=True)
    assert [b["n"] for b in rows] == [0, 2, 5]
    assert (ingestor.stats.stored, ingestor.stats.dead) == (3, 3)
    dead = [channel.basic_get(dead_queue_name(), auto_ack=True) for _ in range(3)]
    assert [properties.headers[REASON_HEADER] for _, properties, _ in dead] == [
        "event 1 of a batch of 6: task holds a NUL character",
        "event 3 of a batch of 6: body holds a lone surrogate (text that is not Unicode)",
        "event 4 of a batch of 6: body holds a lone surrogate (text that is not Unicode)",
    ]
    # And the ingestor said so, one line each
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(lines) == 3
    assert all("\n" not in line for line in lines)


def publish_batch(channel: Any, batch: list[dict[str, Any]]) -> None:
    """As the client's publisher sends what it has buffered: one message, a JSON array."""
    body = b"[" + b",".join(events.encode(m) for m in batch) + b"]"
    publish_raw(channel, body, routing_key="batch")


@pytest.mark.django_db(transaction=True)
def test_a_backlog_of_both_shapes_is_stored_once_in_order_across_many_transactions(channel, caplog):
    # Given a backlog of three tasks' events: single-event messages (an old client), then
    # publisher's batches of 500, then single events again, each task's events numbered
    tasks = [f"ingest-backlog-{t}" for t in range(3)]
    sent = [message(tasks[i % 3], n=i // 3) for i in range(4_200)]
    for m in sent[:600]:
        publish_raw(channel, events.encode(m))
    for start in range(600, 3_600, 500):
        publish_batch(channel, sent[start : start + 500])
    for m in sent[3_600:]:
        publish_raw(channel, events.encode(m))

    # When an ingestor takes it in transactions of at most 200 events
    caplog.set_level(logging.DEBUG, logger="lifecycle.ingest")
    ingestor = Ingestor(conninfo=database_conninfo(), batch_size=200, batch_ms=20)
    run_in_thread(ingestor, until=lambda s: s.received >= len(sent)).join(60)

    # Then every event is stored once, each task's in the order it was published
    # (a transaction takes whole messages: a batch of 500 is one)
    assert ingestor.stats.stored == len(sent) and ingestor.stats.batches >= 12
    for task in tasks:
        bodies = Event.objects.filter(task_key=task).order_by("id").values_list("body", flat=True)
        assert [b["n"] for b in bodies] == list(range(1_400))
    # and nothing is left unacked
    assert queue_state(channel, ingest_queue_name()) == (0, 0)
    # having fitted RabbitMQ's prefetch to the messages' size each time it changed: single
    # events (600 a batch, three batches), batches (at least 16 messages), single events
    prefetches = [
        r.args[0] for r in caplog.records if r.getMessage().startswith("ingest: prefetch")
    ]
    assert prefetches[:1] == [16] and 600 in prefetches and prefetches.index(600) > 0
    assert prefetches.count(16) >= 2 and prefetches[-1] == 600


@pytest.mark.django_db(transaction=True)
def test_while_the_database_is_down_few_batch_messages_but_many_single_events_are_held(
    channel,
):
    # Given an ingestor whose database refuses connections
    down = Ingestor(conninfo="host=127.0.0.1 port=1 dbname=x connect_timeout=1", batch_ms=20)
    thread = run_in_thread(down)
    wait_for(lambda: queue_state(channel, ingest_queue_name())[1] == 1, what="the consumer")

    # When 100 publisher's batches arrive (50,000 events)
    batches = [[message(f"ingest-held-{b}", n=n) for n in range(500)] for b in range(100)]
    for batch in batches:
        publish_batch(channel, batch)
    wait_for(lambda: down.stats.db_retries >= 2, what="database retries")
    # Then it holds about three transactions' worth (6,000 events): 16 messages, not 100
    wait_for(lambda: queue_state(channel, ingest_queue_name())[0] == 100 - 16, what="16 held")
    time.sleep(0.5)
    assert queue_state(channel, ingest_queue_name())[0] == 100 - 16

    # And when single-event messages arrive behind them, it holds thousands of those
    down.stop()
    thread.join(15)
    channel.queue_purge(ingest_queue_name())
    down = Ingestor(conninfo="host=127.0.0.1 port=1 dbname=x connect_timeout=1", batch_ms=20)
    thread = run_in_thread(down)
    for n in range(10_000):
        publish_raw(channel, events.encode(message("ingest-held-single", n=n)))
    wait_for(
        lambda: queue_state(channel, ingest_queue_name())[0] <= 10_000 - 4_000,
        what="thousands of single events taken",
    )
    assert down.stats.stored == 0
    down.stop()
    thread.join(15)
    assert not thread.is_alive()
    # and nothing was acked: they all go back to the queue
    wait_for(lambda: queue_state(channel, ingest_queue_name()) == (10_000, 0), what="requeued")


@pytest.mark.django_db(transaction=True)
def test_text_that_copy_escapes_is_stored_as_it_was_sent(channel):
    # Given events whose text holds what COPY's text format escapes, and what it does not
    odd = 'tab\there, new\nline, return\r, back\\slash, \\N, \\., quote" café ☕ \U0001f600'
    sent = [
        message(f"ingest-odd {odd}", note=odd, path="C:\\temp\\x", nested={"k\t": [odd]}),
        {**message("ingest-odd-status"), "status": "\\N"},
        {**message("ingest-odd-status"), "status": odd[:64]},
        {**message("ingest-odd-status"), "txid": 2**62},
    ]
    publish_batch(channel, sent)

    # When the ingestor stores them (straight into the event table, by COPY)
    ingestor = Ingestor(conninfo=database_conninfo(), batch_ms=20)
    run_in_thread(ingestor, until=lambda s: s.received >= len(sent)).join(15)

    # Then each field is stored exactly as it was sent
    assert ingestor.stats.stored == len(sent)
    rows = Event.objects.filter(uuid__in=[m["uuid"] for m in sent]).order_by("id")
    assert [(r.task_key, r.status, r.body, r.txid) for r in rows] == [
        (m["task"], m["status"], m["body"], m["txid"]) for m in sent
    ]
    assert [r.at for r in rows] == [datetime.fromisoformat(m["at"]) for m in sent]


# -- the publisher -------------------------------------------------------------------------


def test_published_events_reach_the_exchange_routed_and_persistent(tap):
    publisher = Publisher()
    sent = [
        message("pub-1", kind="start"),
        events.make_message(source="api", kind="read", task="pub-1"),
    ]

    for m in sent:
        publisher.publish(m)

    assert publisher.flush(5)
    got = wait_for(lambda: tap(), what="published events")
    assert [(d.routing_key, p.delivery_mode, body) for d, p, body in got] == [
        ("broker.start", 2, events.encode(sent[0])),
        ("api.read", 2, events.encode(sent[1])),
    ]
    assert publisher.stats().published == 2
    assert publisher.close(2)


def test_publish_neither_raises_nor_blocks_when_rabbitmq_is_unreachable():
    publisher = Publisher(
        url="amqp://guest:guest@127.0.0.1:1/%2F", namespace="nowhere", max_events=50
    )

    timings = []
    for i in range(200):
        start = time.perf_counter()
        publisher.publish(message(f"pub-down-{i % 4}"))
        timings.append(time.perf_counter() - start)
    publisher.publish({"not": "an event"})  # nor when the message is wrong

    # Microseconds usually; never the 0.5 s the thread's first reconnection waits, which a
    # publish that waited for the thread would take (the bound is that, not a speed: a busy
    # CI machine can deschedule a process for tens of ms).
    assert max(timings) < 0.25, max(timings)
    assert sorted(timings)[len(timings) // 2] < 0.001
    # The buffer keeps what fits, for when RabbitMQ comes back; only the overflow is lost.
    assert not publisher.flush(1)
    stats = publisher.stats()
    assert (stats.published, stats.queued, stats.dropped) == (0, 50, 151)
    assert not publisher.close(1)


def test_a_graceful_stop_waits_for_every_buffered_event(tap):
    # Given thousands of events buffered by a process that is about to stop
    publisher = Publisher()
    sent = [message(f"pub-stop-{i % 50}", n=i) for i in range(3000)]
    for m in sent:
        publisher.publish(m)
    assert publisher.stats().queued > 500  # most are still waiting for their confirm
    # When it stops (as the middleware's after_worker_shutdown does), then every one arrives
    assert publisher.close()
    got: list[tuple[Any, Any, bytes]] = []
    wait_for(lambda: got.extend(tap()) or len(got) >= 3000, what="the 3,000 events")
    assert sorted(json.loads(body)["body"]["n"] for _, _, body in got) == list(range(3000))


def test_events_gather_for_the_linger_and_travel_as_one_message(channel):
    queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, exchange_name(), routing_key="#")
    publisher = Publisher(linger=0.5)
    publisher.publish(message("pub-linger", n=-1))
    assert publisher.flush(5)  # connected, and the warm-up event is out of the way
    channel.queue_purge(queue)

    # When 50 events are published within the linger
    for i in range(50):
        publisher.publish(message("pub-linger", n=i))
    time.sleep(0.2)
    # Then nothing is sent before it ends, and then they go as one message, in order
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    assert publisher.stats().queued == 50
    wait_for(lambda: channel.queue_declare(queue, passive=True).method.message_count >= 1)
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert method.routing_key == "batch"
    assert [item["body"]["n"] for item in json.loads(body)] == list(range(50))
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    publisher.close(2)


def test_a_read_waiting_for_its_confirm_does_not_wait_out_the_linger(tap):
    publisher = Publisher(linger=10.0)
    publisher.publish(message("pub-wait", n=-1))
    assert publisher.flush(5)
    tap()
    # Given an event waiting out a long linger
    publisher.publish(message("pub-wait", n=0))
    time.sleep(0.3)
    assert tap() == []
    # When a read is published and waits for its own confirm
    started = time.monotonic()
    ticket = publisher.publish(message("pub-wait", kind="start", n=1))
    assert publisher.wait(ticket, 5.0)
    # Then it is sent at once, with the event before it, in order
    assert time.monotonic() - started < 2.0
    got: list[tuple[Any, Any, bytes]] = []
    wait_for(lambda: got.extend(tap()) or len(got) >= 2, what="both events")
    assert [json.loads(body)["body"]["n"] for _, _, body in got] == [0, 1]
    # And a ticket already confirmed needs no wait; a dropped event's (None) never comes
    assert publisher.wait(ticket, 0.0)
    assert not publisher.wait(None, 0.1)
    publisher.close(2)


def test_a_burst_past_the_buffer_is_sent_whole_and_in_order_per_task(tap):
    # Given a burst of twice the buffer's 10,000 events at 20,000 a second (a worker's burst
    # of 20,000 messages is 60,000 events in about 10 s; a tight loop of publish() alone
    # outruns any sender, and its buffer is what absorbs that)
    publisher = Publisher()
    start = time.monotonic()
    for i in range(20_000):
        publisher.publish(message(f"pub-burst-{i % 100}", n=i))
        if i % 200 == 199:
            time.sleep(max(0.0, start + (i + 1) / 20_000 - time.monotonic()))
    # When it flushes, then nothing was dropped: the thread kept up, in batches
    assert publisher.flush(60)
    assert (publisher.stats().dropped, publisher.stats().published) == (0, 20_000)
    got: list[tuple[Any, Any, bytes]] = []
    wait_for(lambda: got.extend(tap()) or len(got) >= 20_000, what="the 20,000 events")
    # And each task's events arrived in the order they were published
    order: dict[str, list[int]] = {}
    for _, _, body in got:
        event = json.loads(body)
        order.setdefault(event["task"], []).append(event["body"]["n"])
    assert len(order) == 100 and all(ns == sorted(ns) for ns in order.values())
    assert sum(len(ns) for ns in order.values()) == 20_000
    publisher.close()


def test_a_stop_while_rabbitmq_is_away_says_why_and_which_tasks_lost_events(caplog):
    # Given events buffered while RabbitMQ is out of reach, of 25 tasks
    publisher = Publisher(url="amqp://guest:guest@127.0.0.1:1/%2F", namespace="nowhere")
    for i in range(100):
        publisher.publish(message(f"pub-lost-{i % 25:02}"))
    # When the process stops, allowing a whole minute
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lifecycle.client.publisher"):
        assert not publisher.close(60)
    # Then it gives up once RabbitMQ has been away a few seconds, not after the minute
    assert time.monotonic() - start < 10
    (line,) = [r.getMessage() for r in caplog.records if "stopping with" in r.getMessage()]
    assert "stopping with 100 events not sent: RabbitMQ out of reach for 5s" in line
    assert "pub-lost-00, pub-lost-01" in line and "pub-lost-19 and 5 more" in line


def test_publish_does_not_block_when_rabbitmq_hangs():
    # Given a "broker" that accepts TCP connections and never speaks AMQP
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    publisher = Publisher(
        url=f"amqp://guest:guest@127.0.0.1:{port}/%2F",
        namespace="x",
        max_events=10,
        connect_timeout=5,
    )
    try:
        # When many events are published while its thread is stuck connecting
        start = time.perf_counter()
        for i in range(500):
            publisher.publish(message(f"pub-hang-{i}"))
        elapsed = time.perf_counter() - start

        # Then publish returned at once, keeping what fits the bounded buffer: a publish
        # that waited for the connection would have waited its 5 s timeout. The bound is
        # that, not a speed: on a busy CI machine 500 calls took 0.21 s once.
        assert elapsed < 2.5, elapsed
        stats = publisher.stats()
        assert (stats.published, stats.queued, stats.dropped) == (0, 10, 490)
    finally:
        silent.close()
    publisher.close(1)


def test_events_published_while_rabbitmq_is_down_are_sent_when_it_returns(tap, rabbit_proxy):
    publisher = Publisher(url=proxied_url(rabbit_proxy), max_backoff=0.5)
    before = [message("pub-outage", n=i) for i in range(5)]
    during = [message("pub-outage", n=i) for i in range(5, 35)]
    for m in before:
        publisher.publish(m)
    assert publisher.flush(5)

    # When RabbitMQ goes away and events keep coming
    rabbit_proxy.cut()
    for m in during:
        publisher.publish(m)
    assert not publisher.flush(1.5)
    assert publisher.stats().queued == len(during)

    # Then they are sent, in order and once each, when it is back; none was lost
    rabbit_proxy.restore()
    assert publisher.flush(15)
    got = []
    wait_for(lambda: got.extend(tap()) or len(got) >= 35, what="every event")
    assert [events.parse_message(b).body["n"] for _, _, b in got] == list(range(35))
    stats = publisher.stats()
    assert (stats.published, stats.dropped, stats.queued, stats.gaps) == (35, 0, 0, 0)
    publisher.close(2)


def test_overflow_while_rabbitmq_is_down_becomes_a_gap_event_per_task(tap, rabbit_proxy):
    publisher = Publisher(url=proxied_url(rabbit_proxy), max_events=10, max_backoff=0.5)
    publisher.publish(message("pub-gap-a", n=0))
    assert publisher.flush(5)
    rabbit_proxy.cut()

    # When more events come than the buffer holds, for two tasks
    sent = [message("pub-gap-a" if i % 3 else "pub-gap-b", n=i + 1) for i in range(25)]
    for m in sent:
        publisher.publish(m)
    assert publisher.stats().dropped == 15

    # Then, once RabbitMQ is back, the buffered ten arrive, then one gap event per task
    # that lost events, with how many and between which times
    rabbit_proxy.restore()
    got = []
    wait_for(lambda: got.extend(tap()) or len(got) >= 1 + 10 + 2, what="events and gaps")
    parsed = [events.parse_message(b) for _, _, b in got]
    assert [e.body["n"] for e in parsed if e.kind != "gap"] == list(range(11))
    gaps = {e.task_key: e for e in parsed if e.kind == "gap"}
    lost = sent[10:]
    for task in ("pub-gap-a", "pub-gap-b"):
        mine = [m for m in lost if m["task"] == task]
        gap = gaps[task]
        assert gap.source == "broker"
        assert gap.body["dropped"] == len(mine)
        assert (gap.body["first_at"], gap.body["last_at"]) == (mine[0]["at"], mine[-1]["at"])
        assert gap.body["pid"] == os.getpid()
        assert gap.body["reason"] == "the publisher's buffer was full (10 events)"
    assert [d.routing_key for d, _, _ in got][-2:] == ["broker.gap", "broker.gap"]
    # Counted once RabbitMQ confirms them, which may come after a consumer has them
    wait_for(lambda: publisher.stats().gaps == 2, what="the gaps' confirms")
    publisher.close(2)


def test_a_fresh_namespace_routes_the_first_event_to_the_ingest_queue(channel):
    # Given a RabbitMQ where nothing of this namespace exists yet (no ingestor ever ran)
    namespace = f"{settings.LIFECYCLE_NAMESPACE}-fresh-{uuid.uuid4().hex[:8]}"
    publisher = Publisher(namespace=namespace)
    try:
        # When a process publishes its first event
        first = message("pub-fresh")
        publisher.publish(first)
        assert publisher.flush(5)

        # Then the publisher declared the ingest queue first, and the event waits there
        method, _, body = channel.basic_get(f"{namespace}.ingest", auto_ack=True)
        assert method is not None and events.parse_message(body).uuid == first["uuid"]
    finally:
        publisher.close(2)
        channel.queue_delete(f"{namespace}.ingest")
        channel.exchange_delete(f"{namespace}.events")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_publishes_through_its_own_thread(tap):
    publisher = Publisher()
    parent = message("pub-fork", who="parent")
    publisher.publish(parent)
    assert publisher.flush(5)

    child_message = message("pub-fork", who="child")
    pid = os.fork()
    if pid == 0:  # the child: like a Dramatiq worker process
        code = 1
        try:
            publisher.publish(child_message)
            code = 0 if publisher.close(5) and publisher.stats().published == 1 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    got = wait_for(lambda: tap(), what="events")
    got += tap() if len(got) < 2 else []
    assert sorted(events.parse_message(b).body["who"] for _, _, b in got) == ["child", "parent"]
    # The parent's thread still works after the fork.
    publisher.publish(message("pub-fork", who="parent again"))
    assert publisher.flush(5) and publisher.stats().published == 2
    publisher.close(2)


# -- the log handler -----------------------------------------------------------------------


@pytest.fixture
def log_handler() -> Iterator[tuple[logging.Logger, Published]]:
    collector = Published()
    handler = LifecycleLogHandler("api", publisher=collector)  # type: ignore[arg-type]
    logger = logging.getLogger("tests.capture")
    logger.addHandler(handler)
    yield logger, collector
    logger.removeHandler(handler)


def test_a_tasks_warnings_become_log_events(log_handler):
    logger, collector = log_handler

    logger.warning("outside any task")
    with task_context("task-7"):
        logger.info("too quiet to report")
        logger.warning("disk %s%% full", 91)
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            logger.exception("gave up")
        logger.critical("on fire")
    logger.error("after the task")

    assert [(m["task"], m["kind"]) for m in collector.messages] == [
        ("task-7", "warning"),
        ("task-7", "error"),
        ("task-7", "critical"),
    ]
    warning, error, _ = (m["body"] for m in collector.messages)
    assert warning["message"] == "disk 91% full"
    assert (warning["logger"], warning["process_role"], warning["pid"]) == (
        "tests.capture",
        "api",
        os.getpid(),
    )
    assert warning["exception"] is None
    assert "ZeroDivisionError: division by zero" in error["exception"]
    assert all(events.parse_message(events.encode(m)) for m in collector.messages)


def test_log_events_are_bounded_and_never_about_capture_itself(log_handler):
    logger, collector = log_handler
    handler = logger.handlers[-1]

    def deep(n: int) -> None:
        if n == 0:
            raise RuntimeError("x" * 20_000)
        deep(n - 1)

    with task_context("task-8"):
        try:
            deep(50)
        except RuntimeError:
            logger.exception("deep failure")
        for name in ("pika.connection", "lifecycle.client.publisher"):
            handler.handle(logging.LogRecord(name, logging.ERROR, __file__, 1, "noise", None, None))

    (only,) = collector.messages
    assert len(only["body"]["exception"]) <= MAX_EXCEPTION_CHARS + 1
    assert only["body"]["exception"].rstrip().endswith("x" * 100)
    assert len(events.encode(only)) < events.MAX_MESSAGE_BYTES


# -- the Dramatiq middleware, with a real worker -------------------------------------------


@pytest.fixture
def worker_broker(tap: Callable[[], list]) -> Iterator[tuple[RabbitmqBroker, str]]:
    broker = RabbitmqBroker(
        url=settings.AMQP_URL, middleware=[m() for m in default_middleware] + [LifecycleEvents()]
    )
    queue = f"{settings.LIFECYCLE_NAMESPACE}.capture-test"
    root = logging.getLogger()
    # A handler another test's import installed (dashboard.asgi installs one) would publish
    # every record a second time: only this test's handler runs meanwhile.
    others = [h for h in root.handlers if isinstance(h, LifecycleLogHandler)]
    for other in others:
        root.removeHandler(other)
    handler = LifecycleLogHandler("worker")
    root.addHandler(handler)
    yield broker, queue
    root.removeHandler(handler)
    for other in others:
        root.addHandler(other)
    for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
        broker.channel.queue_delete(name)
    broker.close()


def broker_events(got: list[tuple[Any, Any, bytes]], task: str) -> list[events.IncomingEvent]:
    parsed = [events.parse_message(body) for _, _, body in got]
    return [e for e in parsed if e.task_key == task]


def test_the_middleware_reports_each_broker_step_with_its_attempt(worker_broker, tap):
    broker, queue = worker_broker
    calls: Counter[str] = Counter()
    log = logging.getLogger("tests.capture.actor")

    def ok(task_id: str) -> None:
        assert current_task.get() == task_id  # the middleware set the current task

    def flaky(key: str) -> None:
        calls[key] += 1
        if calls[key] == 1:
            log.warning("attempt %d of %s is failing", calls[key], key)
            raise ValueError("boom")

    def doomed(key: str) -> None:
        raise ValueError("never works")

    options = {"broker": broker, "queue_name": queue, "min_backoff": 10, "max_backoff": 20}
    actors = [
        dramatiq.actor(ok, actor_name="capture_test_ok", **options),
        dramatiq.actor(flaky, actor_name="capture_test_flaky", max_retries=3, **options),
        dramatiq.actor(doomed, actor_name="capture_test_doomed", max_retries=0, **options),
    ]
    keys = {
        name: f"mw-{name}-{uuid.uuid4().hex[:8]}" for name in ("ok", "delayed", "flaky", "doomed")
    }

    # Given a worker with the middleware
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        # When one message succeeds, one fails then succeeds on retry, one fails for good
        sent = {
            "ok": actors[0].send(task_id=keys["ok"]),
            "delayed": actors[0].send_with_options(kwargs={"task_id": keys["delayed"]}, delay=30),
            "flaky": actors[1].send(keys["flaky"]),
            "doomed": actors[2].send(keys["doomed"]),
        }
        got: list[tuple[Any, Any, bytes]] = []

        def all_arrived() -> bool:
            got.extend(tap())
            kinds = [e.kind for e in broker_events(got, keys["flaky"])]
            return (
                len(broker_events(got, keys["ok"])) >= 3
                and "ack" in [e.kind for e in broker_events(got, keys["delayed"])]
                and "ack" in kinds
                and "nack" in [e.kind for e in broker_events(got, keys["doomed"])]
            )

        wait_for(all_arrived, what="the broker events")
        time.sleep(0.2)
        got.extend(tap())
    finally:
        worker.stop()

    def steps(name: str, source: str = "broker") -> list[tuple[str, int]]:
        return [
            (e.kind, e.body["attempt"])
            for e in broker_events(got, keys[name])
            if e.source == source
        ]

    # Then each message's steps are reported, with attempt numbers
    assert Counter(steps("ok")) == Counter([("enqueue", 1), ("start", 1), ("ack", 1)])
    # A delayed message is one enqueue (with its delay), not a second one when it comes due.
    assert Counter(steps("delayed")) == Counter([("enqueue", 1), ("start", 1), ("ack", 1)])
    (delayed_enqueue,) = [e for e in broker_events(got, keys["delayed"]) if e.kind == "enqueue"]
    assert delayed_enqueue.body["delay"] == 30
    flaky_steps = steps("flaky")
    assert Counter(flaky_steps) == Counter(
        [("enqueue", 1), ("start", 1), ("fail", 1), ("retry", 2), ("start", 2), ("ack", 2)]
    )
    # in causal order where the worker's own steps follow each other
    order = flaky_steps.index
    assert order(("start", 1)) < order(("fail", 1)) < order(("retry", 2))
    assert order(("start", 2)) < order(("ack", 2))
    assert Counter(steps("doomed")) == Counter(
        [("enqueue", 1), ("start", 1), ("fail", 1), ("nack", 1)]
    )

    # and the bodies say which message, actor, queue, process and thread
    flaky_events = [e for e in broker_events(got, keys["flaky"]) if e.source == "broker"]
    for e in flaky_events:
        assert e.body["message_id"] == sent["flaky"].message_id
        assert e.body["actor"] == "capture_test_flaky"
        assert e.body["queue"] == queue
        assert e.body["pid"] == os.getpid()
        assert e.body["thread"]
    by_kind = {e.kind: e for e in flaky_events}
    assert by_kind["fail"].body["exception"] == "ValueError('boom')"
    # The ack is reported once RabbitMQ has it (after_ack, in Dramatiq's consumer thread),
    # naming the worker thread that ran the attempt; the failed attempt's own ack is not.
    (ack,) = [e for e in flaky_events if e.kind == "ack"]
    (second_start,) = [e for e in flaky_events if e.kind == "start" and e.body["attempt"] == 2]
    assert ack.body["thread"] == second_start.body["thread"]
    assert ack.at >= second_start.at
    assert by_kind["retry"].body["delay"] > 0
    assert by_kind["start"].body["redelivered"] is False

    # and what the worker logged while handling the task is on the same task
    logs = [e for e in broker_events(got, keys["flaky"]) if e.source == "log"]
    assert ("warning", "attempt 1 of " + keys["flaky"] + " is failing") in [
        (e.kind, e.body["message"]) for e in logs
    ]
    (error,) = [e for e in logs if e.kind == "error"]  # Dramatiq's "Failed to process message"
    assert "ValueError: boom" in error.body["exception"]
    assert error.body["process_role"] == "worker"
    assert current_task.get() is None


def test_closing_after_an_outage_still_tells_what_was_lost(tap, rabbit_proxy):
    publisher = Publisher(url=proxied_url(rabbit_proxy), max_events=3, max_backoff=0.5)
    publisher.publish(message("pub-close", n=0))
    assert publisher.flush(5)
    rabbit_proxy.cut()
    for i in range(1, 8):
        publisher.publish(message("pub-close", n=i))

    # When RabbitMQ returns and the process ends at once (atexit, a worker's shutdown)
    rabbit_proxy.restore()
    assert publisher.close(15)

    # Then the buffered events and the gap both went out before the thread ended
    got = [events.parse_message(b) for _, _, b in wait_for(lambda: tap(), what="events")]
    got += [events.parse_message(b) for _, _, b in tap()]

    def gap_arrived() -> bool:
        got.extend(events.parse_message(b) for _, _, b in tap())
        return any(e.kind == "gap" for e in got)

    wait_for(gap_arrived, 5, what="the gap")
    (gap,) = [e for e in got if e.kind == "gap"]
    assert gap.body["dropped"] == 4
    assert sorted(e.body["n"] for e in got if e.kind != "gap") == [0, 1, 2, 3]
