"""The no-op actor that ``bench.worker_overhead`` drains: ``dramatiq bench.worker_app``.

A Dramatiq application as a user writes one, set up from the environment before the actor
is declared (Dramatiq's broker is global): ``AMQP_URL``; ``BENCH_QUEUE``, the queue;
``BENCH_LIFECYCLE=1`` adds ``LifecycleEvents()`` (publishing to ``LIFECYCLE_NAMESPACE``);
``hooks`` or ``buffer`` adds it with a publisher that sends nothing, ``empty`` a middleware
that does nothing, ``minimal`` the least start and ack hooks, ``inlined`` the same events
as the shipped middleware at the least a Python middleware spends (``--variant``).

``AckClock`` notes when the worker booted, when it started its first message and when it
acked the ``BENCH_EXPECT``-th, with the CPU time of the process and of each kind of thread
(``thread_cpu``), and writes them as JSON to ``BENCH_RESULT``; at shutdown, after the
middleware closed its publisher, it writes the publisher's counts to ``BENCH_RESULT`` +
``.shutdown``. With ``BENCH_PROFILE=<dir>`` every thread started after the import runs
under ``cProfile`` timed by its own CPU clock (``time.thread_time``: a thread waiting for
the GIL, a lock or a socket costs nothing), and at shutdown each kind of thread's merged
profile is written to ``<dir>/<kind>.prof``. It imports no Django.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import pstats
import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

PROFILE = os.environ.get("BENCH_PROFILE")
# The garbage collector's passes by generation and the seconds they took (by the clock of
# the thread each ran on), for the bench to tell the collector's share from the hooks'.
_gc = {"gen0": 0, "gen1": 0, "gen2": 0, "seconds": 0.0}
_gc_began = threading.local()


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_began.at = time.thread_time()
    else:
        _gc[f"gen{info['generation']}"] += 1
        _gc["seconds"] += time.thread_time() - getattr(_gc_began, "at", time.thread_time())


gc.callbacks.append(_gc_callback)
_profiles: list[tuple[threading.Thread, cProfile.Profile]] = []
# ``--variant timed``: the middleware's hooks' own CPU seconds over the sampled messages, and
# the hook calls that were timed (three a message, one message in SAMPLE).
_hooks = {"seconds": 0.0, "calls": 0}


def _write(path: str, data: dict[str, Any]) -> None:
    with open(path + ".tmp", "w") as out:
        json.dump(data, out)
    os.replace(path + ".tmp", path)  # the bench never reads half a file


class AckClock(dramatiq.Middleware):
    """When the worker booted, started its first message and acked the last expected one.

    It is added before ``LifecycleEvents``: Dramatiq calls ``after_*`` hooks in reverse
    order, so the last ack is timed after the middleware's own ``after_ack``, and the
    shutdown figures are read after it closed its publisher."""

    def __init__(self, expect: int, path: str) -> None:
        self.expect, self.path = expect, path
        self.lock = threading.Lock()
        self.acked = 0
        self.times: dict[str, float] = {}
        self.boot_threads: dict[int, tuple[str, float]] = {}
        self.boot_gc: dict[str, float] = {}
        self.boot_system: dict[str, float] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.times.update(boot=time.monotonic(), boot_cpu=time.process_time())
        self.boot_gc = dict(_gc)
        self.boot_threads = thread_cpu()
        self.boot_system = system_cpu()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if "first" not in self.times:
            self.times.setdefault("first", time.monotonic())

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        with self.lock:
            self.acked += 1
            last = self.acked == self.expect
        if last:
            self.times.update(last=time.monotonic(), last_cpu=time.process_time())
            threads = cpu_since(self.boot_threads)
            _write(
                self.path,
                {
                    "pid": os.getpid(),
                    **self.times,
                    "threads": threads,
                    "system": {
                        role: seconds - self.boot_system.get(role, 0.0)
                        for role, seconds in system_cpu().items()
                    },
                    "gc": {k: v - self.boot_gc.get(k, 0) for k, v in _gc.items()},
                    **({"hooks": _hooks} if _hooks["calls"] else {}),
                    **_publisher_stats(),
                },
            )

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        # The worker and consumer threads are joined by now, and the publisher's closed.
        if PROFILE:
            _dump_profiles(PROFILE)
        _write(
            self.path + ".shutdown",
            {"acked": self.acked, "cpu": time.process_time(), **_publisher_stats()},
        )


def _role(thread: threading.Thread) -> str:
    from dramatiq import worker

    # Dramatiq 1.x named them _WorkerThread and _ConsumerThread.
    workers = getattr(worker, "WorkerThread", None) or worker._WorkerThread
    consumers = getattr(worker, "ConsumerThread", None) or worker._ConsumerThread
    if isinstance(thread, workers):
        return "worker threads"
    if isinstance(thread, consumers):  # the queue's and its delay queue's
        return "consumer threads"
    if thread.name == "lifecycle-publisher":
        return "publisher thread"
    return "other threads"


def thread_cpu() -> dict[int, tuple[str, float]]:
    """Each live thread's kind and CPU seconds, by its own clock (C code and system time
    included; waiting for the GIL excluded)."""
    found: dict[int, tuple[str, float]] = {}
    for thread in threading.enumerate():
        try:
            clock = time.pthread_getcpuclockid(thread.ident or 0)
            found[thread.ident or 0] = (_role(thread), time.clock_gettime(clock))
        except (OSError, OverflowError):  # it ended meanwhile
            continue
    return found


def system_cpu() -> dict[str, float]:
    """Each kind of live thread's system (kernel) CPU seconds so far: what its system calls,
    futex waits for the GIL or a lock included, cost it (``/proc``; empty elsewhere)."""
    found: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        role = _role(thread)
        found[role] = found.get(role, 0.0) + int(fields[12]) / tick
    return found


def cpu_since(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """Each kind of thread's CPU seconds since ``before`` (threads alive now)."""
    found: dict[str, float] = {}
    for ident, (role, seconds) in thread_cpu().items():
        start = before.get(ident, (role, 0.0))[1]
        found[role] = found.get(role, 0.0) + seconds - start
    return found


def _profile_thread(*args: Any) -> None:
    """The first profiling event of a new thread: profile it from here on, by its CPU."""
    profile = cProfile.Profile(time.thread_time)
    _profiles.append((threading.current_thread(), profile))
    profile.enable()  # takes this function's place for the thread


def _dump_profiles(directory: str) -> None:
    """Each kind of thread's profiles, merged. Only threads that ended: a profile read from
    another thread while its own runs closes the open calls by the wrong thread's clock."""
    merged: dict[str, pstats.Stats] = {}
    for thread, profile in _profiles:
        role = _role(thread)
        thread.join(10 if role == "publisher thread" else 0.5)  # it ends after its send
        if thread.is_alive():
            continue
        if role in merged:
            merged[role].add(profile)
        else:
            merged[role] = pstats.Stats(profile)
    for role, stats in merged.items():
        stats.dump_stats(os.path.join(directory, f"{role}.prof"))


def _publisher_stats() -> dict[str, int]:
    from lifecycle.client.publisher import current

    publisher = current()
    if publisher is None:
        return {}
    stats = publisher.stats()
    return {
        "published": stats.published,
        "dropped": stats.dropped,
        "failed": stats.failed,
        "queued": stats.queued,
        "gaps": stats.gaps,
    }


if PROFILE:
    threading.setprofile(_profile_thread)

broker = RabbitmqBroker(url=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
broker.add_middleware(
    AckClock(int(os.environ.get("BENCH_EXPECT", "0")), os.environ.get("BENCH_RESULT", os.devnull))
)
if os.environ.get("BENCH_LIFECYCLE") in ("1", "lazy"):
    from lifecycle.client import LifecycleEvents

    if os.environ["BENCH_LIFECYCLE"] == "lazy":  # the link thread's rounds 10 times fewer
        os.environ["LIFECYCLE_PUBLISH_LINGER"] = "0.2"
    broker.add_middleware(LifecycleEvents())
elif os.environ.get("BENCH_LIFECYCLE") == "timed":
    # The middleware as shipped, its three hooks timed in place by the thread's own CPU
    # clock, for one message in SAMPLE (by its id): what its own code costs in a busy worker,
    # apart from what it does to the rest (``--variant timed``).
    from lifecycle.client import LifecycleEvents

    SAMPLE = 8

    class _Timed(LifecycleEvents):
        def _timed(self, hook: Any, message: Any, *args: Any, **kwargs: Any) -> None:
            if hash(message.message_id) % SAMPLE:
                hook(*args, message, **kwargs)
                return
            clock = time.thread_time
            first = clock()
            began = clock()  # the clock's own cost, once, taken off below
            hook(*args, message, **kwargs)
            _hooks["seconds"] += clock() - began - (began - first)
            _hooks["calls"] += 1

        def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
            self._timed(super().before_process_message, message, broker)

        def after_process_message(self, broker: dramatiq.Broker, message: Any, **kw: Any) -> None:
            self._timed(super().after_process_message, message, broker, **kw)

        def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
            self._timed(super().after_ack, message, broker)

    broker.add_middleware(_Timed())
elif os.environ.get("BENCH_LIFECYCLE") in ("inlined", "inlined-noctx", "inlined-hooks"):
    # The ceiling of a Python middleware (``--variant inlined``): the same start and ack
    # tuples to the same publisher, every lookup bound once, no call but the publisher's
    # append. Not a middleware to ship: it skips what the shipped hooks must check (a key
    # function of the application's, a subclass's ``_key``, a publisher replaced after
    # boot, ``LIFECYCLE_KEY_PREFIX``) and expects Dramatiq's MessageProxy.
    from dramatiq.common import q_name as _q_name

    from lifecycle.client import LifecycleEvents
    from lifecycle.client.context import current_attempt as _ca
    from lifecycle.client.context import current_task as _ct
    from lifecycle.client.messages import BROKER_MARK as _MARK
    from lifecycle.client.publisher import get_publisher as _gp

    _CTX = os.environ["BENCH_LIFECYCLE"] != "inlined-noctx"
    _names: dict[int, str] = {}
    _qs: dict[str, str] = {}

    class _Inlined(LifecycleEvents):
        def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
            super().before_worker_boot(broker, worker)
            discard = os.environ["BENCH_LIFECYCLE"] == "inlined-hooks"
            self._n: Callable[[Any], None] = (lambda event: None) if discard else _gp()._note

        def before_process_message(
            self,
            broker: dramatiq.Broker,
            message: Any,
            _time: Any = time.time,
            _st: Any = _ct.set,
            _sa: Any = _ca.set,
            _ident: Any = threading.get_ident,
            _pid: int = os.getpid(),
        ) -> None:
            own = message.__dict__
            inner = own["_message"]
            retries = inner.options.get("retries")
            attempt = retries + 1 if retries else 1
            kwargs = inner.kwargs
            task_id = kwargs.get("task_id") if kwargs else None
            key = str(task_id) if task_id is not None else str(inner.message_id)
            ident = _ident()
            name = _names.get(ident)
            if name is None:
                name = _names[ident] = threading.current_thread().name
            queue = _qs.get(inner.queue_name)
            if queue is None:
                queue = _qs[inner.queue_name] = _q_name(inner.queue_name)
            red = own.get("redelivered")
            mid = inner.message_id
            fields = (
                _MARK,
                mid,
                inner.actor_name,
                queue,
                attempt,
                _pid,
                name,
                None if red is None else bool(red),
            )
            own["_lifecycle_event"] = (key, fields)
            if _CTX:
                _st(key)
                _sa((mid, attempt))
            self._n(("broker", "start", key, None, _time(), None, fields))

        def after_process_message(
            self,
            broker: dramatiq.Broker,
            message: Any,
            *,
            result: Any = None,
            exception: BaseException | None = None,
            _st: Any = _ct.set,
            _sa: Any = _ca.set,
        ) -> None:
            if exception is None:
                message.__dict__["_lifecycle_succeeded"] = True
            if _CTX:
                _st(None)
                _sa(None)

        def after_ack(self, broker: dramatiq.Broker, message: Any, _time: Any = time.time) -> None:
            own = message.__dict__
            if own.get("_lifecycle_succeeded"):
                key, fields = own["_lifecycle_event"]
                self._n(("broker", "ack", key, None, _time(), None, fields))

    broker.add_middleware(_Inlined())
elif os.environ.get("BENCH_LIFECYCLE") == "empty":
    broker.add_middleware(dramatiq.Middleware())  # Dramatiq's own cost of one more middleware
elif os.environ.get("BENCH_LIFECYCLE") == "minimal":
    import collections

    _sink: collections.deque[Any] = collections.deque(maxlen=1000)

    class _Minimal(dramatiq.Middleware):
        """The least a start and an ack event could cost: a time and the message, kept."""

        def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
            _sink.append((time.time(), message))

        def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
            _sink.append((time.time(), message))

    broker.add_middleware(_Minimal())
elif os.environ.get("BENCH_LIFECYCLE") in ("hooks", "buffer"):
    # What the floor is (``--variant``): the middleware's hooks with a publisher whose thread
    # never runs: ``hooks``, every event discarded as it is emitted; ``buffer``, every event
    # buffered as usual (the caller's whole cost), none sent.
    from lifecycle.client import LifecycleEvents
    from lifecycle.client.publisher import Publisher

    class _Unsent(Publisher):
        def _start_thread(self) -> None:
            self._running = True

    class _Discarded(_Unsent):
        def _append(self, message: Any) -> int | None:
            return None

        def _note(self, message: Any) -> None:  # the start's and the ack's (``_send``)
            return None

    unsent = _Discarded if os.environ["BENCH_LIFECYCLE"] == "hooks" else _Unsent
    broker.add_middleware(LifecycleEvents(publisher=unsent(max_events=10**9, max_bytes=10**12)))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=os.environ.get("BENCH_QUEUE", "lifecycle-bench.worker"), max_retries=0)
def noop(task_id: str) -> None:
    """Nothing: what is left is the worker's own cost per message, and the middleware's."""
