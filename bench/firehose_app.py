"""The application ``bench.firehose`` attaches: a task table, a Dramatiq worker and an API.

Nothing of it is the lab's and it imports no Django: only the client, as a team's own
service would (README, Attaching another application, step 2).

    python -m dramatiq bench.firehose_app --queues $FIREHOSE_QUEUE     the worker
    python -m bench.firehose_app send|read                              the API

Both are set up from the environment before the actor is declared (Dramatiq's broker is
global): ``AMQP_URL`` and ``LIFECYCLE_NAMESPACE`` for the client, ``FIREHOSE_DATABASE``
(the application's own database) and ``FIREHOSE_QUEUE``.

The actor commits its task's row three times, each in its own transaction: ``RUNNING``,
its progress, ``COMPLETED``. The API is two processes, as an API served by several is:
each prints ``ready`` and waits for a line on its standard input. ``send`` then sends
``FIREHOSE_TASKS`` messages (keys ``FIREHOSE_PREFIX`` + a number) at ``FIREHOSE_RATE`` a
second and prints ``enqueued``; ``read`` reads each task ``len(READ_AFTER)`` times with
``read_row``, that long after its planned send, from ``FIREHOSE_READERS`` threads with a
connection each. Once done and its publisher flushed, each writes what it did to
``FIREHOSE_RESULT`` (JSON).
"""

from __future__ import annotations

import heapq
import json
import os
import sys
import threading
import time
from typing import Any

import dramatiq
import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from lifecycle.client import LifecycleEvents, get_publisher, read_row

TABLE = "fh_task"
SCHEMA = """
CREATE TABLE fh_task (
    id text PRIMARY KEY,
    status text NOT NULL DEFAULT 'PENDING',
    progress integer NOT NULL DEFAULT 0,
    note text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
)
"""
STEPS = (
    "UPDATE fh_task SET status = 'RUNNING', started_at = now() WHERE id = %s",
    "UPDATE fh_task SET progress = 50 WHERE id = %s",
    "UPDATE fh_task SET status = 'COMPLETED', progress = 100, finished_at = now() WHERE id = %s",
)
READ_AFTER = (0.0, 0.02, 0.05, 0.1, 0.25)  # seconds after the send: a client polling
FLUSH_TIMEOUT = 120.0

DATABASE = os.environ.get("FIREHOSE_DATABASE", "")
broker = RabbitmqBroker(url=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
broker.add_middleware(LifecycleEvents())
dramatiq.set_broker(broker)
_local = threading.local()


def _connection(application_name: str) -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(DATABASE, autocommit=True, application_name=application_name)
        _local.conn = conn
    return conn


@dramatiq.actor(queue_name=os.environ.get("FIREHOSE_QUEUE", "firehose"), max_retries=0)
def work(task_id: str) -> None:
    """Three commits of the task's row, each its own transaction (autocommit)."""
    conn = _connection("firehose-worker")
    for step in STEPS:
        conn.execute(step, [task_id])


class Reads:
    """The API's reads: each task read at ``READ_AFTER`` past its send, by reader threads."""

    def __init__(self, readers: int) -> None:
        self.due: list[tuple[float, str]] = []
        self.ready = threading.Condition()
        self.sending = True
        self.done = self.errors = 0
        self.late: list[float] = []  # seconds past its due time each read started
        self.threads = [
            threading.Thread(target=self.reader, name=f"reader-{i}", daemon=True)
            for i in range(readers)
        ]
        for thread in self.threads:
            thread.start()

    def add(self, key: str, sent: float) -> None:
        with self.ready:
            for after in READ_AFTER:
                heapq.heappush(self.due, (sent + after, key))
            self.ready.notify()

    def finish(self) -> None:
        with self.ready:
            self.sending = False
            self.ready.notify_all()
        for thread in self.threads:
            thread.join()

    def _next(self) -> tuple[float, str] | None:
        with self.ready:
            while True:
                if self.due:
                    wait = self.due[0][0] - time.monotonic()
                    if wait <= 0:
                        found = heapq.heappop(self.due)
                        if self.due:
                            self.ready.notify()  # another reader may take the next one
                        return found
                    self.ready.wait(wait)
                elif not self.sending:
                    return None
                else:
                    self.ready.wait()

    def reader(self) -> None:
        with psycopg.connect(DATABASE, autocommit=True, application_name="firehose-api") as conn:
            while (item := self._next()) is not None:
                due, key = item
                late = time.monotonic() - due
                try:
                    read_row(conn, TABLE, key, client="firehose-api")
                except psycopg.Error:
                    self.errors += 1
                    continue
                self.late.append(late)
                self.done += 1


def api(role: str) -> int:
    """``send``: the tasks, at the rate; ``read``: each task's reads, on the same schedule
    (as planned: a send that runs late does not move them)."""
    prefix = os.environ["FIREHOSE_PREFIX"]
    count = int(os.environ["FIREHOSE_TASKS"])
    rate = float(os.environ["FIREHOSE_RATE"])
    keys = [f"{prefix}{i:06d}" for i in range(count)]
    reads = Reads(int(os.environ.get("FIREHOSE_READERS", "8"))) if role == "read" else None
    publisher = get_publisher()  # made before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    if reads is None:
        for i, key in enumerate(keys):
            if (wait := start + i / rate - time.monotonic()) > 0:
                time.sleep(wait)
            work.send(task_id=key)
        print("enqueued", flush=True)
    else:
        for i, key in enumerate(keys):
            reads.add(key, start + i / rate)
        reads.finish()
    seconds = time.monotonic() - start
    flushed = publisher.flush(timeout=FLUSH_TIMEOUT)
    stats = publisher.stats()
    late = sorted(reads.late) if reads else []
    result = {
        "role": role,
        "tasks": count,
        "seconds": seconds,
        "reads": reads.done if reads else 0,
        "read_errors": reads.errors if reads else 0,
        "read_late_p50": late[len(late) // 2] if late else 0.0,
        "read_late_p99": late[min(len(late) - 1, int(len(late) * 0.99))] if late else 0.0,
        "flushed": flushed,
        "publisher": {
            name: getattr(stats, name)
            for name in ("published", "dropped", "failed", "queued", "gaps")
            if hasattr(stats, name)
        },
    }
    path = os.environ["FIREHOSE_RESULT"]
    with open(path + ".tmp", "w") as out:
        json.dump(result, out)
    os.replace(path + ".tmp", path)
    broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(api(sys.argv[1] if len(sys.argv) > 1 else "send"))
