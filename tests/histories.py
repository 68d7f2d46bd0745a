"""One language for writing a task's history in tests, as the capture pieces record it.

``History`` plays a history in arrival order: trigger commits with growing txids, broker
steps, API reads carrying xmin and snapshot, probe polls and log records, each 10 ms after
the one before. ``event`` and its kin place one event by hand (its id, its time) for the
tests whose point is an order or a spacing. ``Plan`` and ``live`` generate lifecycles that
obey every rule, for the property tests to break one way at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from lifecycle.check.rules import Finding, check
from lifecycle.events import EventRecord
from lifecycle.statuses import COMPLETED, FAILED, PENDING, RUNNING

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
OTHER_TERMINAL = {COMPLETED: FAILED, FAILED: COMPLETED}


@dataclass
class Version:
    txid: int
    status: str


@dataclass
class History:
    """Records one task's events as the lab would: ids in arrival order, 10 ms apart."""

    first_txid: int = 812
    txid_step: int = 1
    run: int = 7
    task_key: str = "task-1"
    first_id: int = 1
    events: list[EventRecord] = field(default_factory=list)
    versions: list[Version] = field(default_factory=list)
    clock: datetime = T0

    @property
    def status(self) -> str:
        return self.versions[-1].status

    def add(self, source: str, kind: str, **fields: Any) -> EventRecord:
        self.clock += timedelta(milliseconds=fields.pop("after_ms", 10))
        at = fields.pop("at", self.clock)
        received_at = fields.pop("received_at", at + timedelta(milliseconds=3))
        event = EventRecord(
            id=self.first_id + len(self.events),
            source=source,
            kind=kind,
            task_key=self.task_key,
            at=at,
            received_at=received_at,
            **fields,
        )
        self.events.append(event)
        return event

    # The writer: one event per change, in the writer's transaction.
    def insert(self, status: str = PENDING) -> EventRecord:
        return self._change("insert", [status])[0]

    def commit(self, *statuses: str, after_ms: int = 10) -> EventRecord:
        """One transaction changing the row once per status; returns its last event."""
        return self._change("update", list(statuses), after_ms)[-1]

    def _change(self, kind: str, statuses: list[str], after_ms: int = 10) -> list[EventRecord]:
        txid = self.versions[-1].txid + self.txid_step if self.versions else self.first_txid
        old = self.status if self.versions else None
        made = []
        for status in statuses:
            self.clock += timedelta(milliseconds=after_ms)
            made.append(
                self.add(
                    "db",
                    kind,
                    status=status,
                    txid=txid,
                    after_ms=0,
                    received_at=self.clock - timedelta(milliseconds=2),  # the writer's now()
                    body={
                        "old_status": old,
                        "new_status": status,
                        "changed": ["status", "updated_at"],
                        "values": {"status": status},
                        "application_name": "lab-worker",
                        "pid": 4242,
                        "table": "public.lab_task",
                    },
                )
            )
            old, kind = status, "update"
        self.versions.append(Version(txid, statuses[-1]))
        return made

    # The broker, as the Dramatiq middleware reports it.
    def broker(self, kind: str, *, message: str = "m1", attempt: int = 1, **extra: Any) -> None:
        body = {"message_id": message, "actor": "run_task", "queue": "default"}
        self.add("broker", kind, body={**body, "attempt": attempt, "pid": 51, **extra})

    def log(
        self, kind: str, message: str, exception: str | None = None, **extra: Any
    ) -> EventRecord:
        body = {"logger": "lab.worker", "message": message, "exception": exception}
        return self.add("log", kind, body={**body, "process": 51, **extra})

    # The observed API and the probe.
    def snapshot(self) -> str:
        """A fresh snapshot: every commit so far visible, other writers' txids in progress."""
        xmax = self.versions[-1].txid + 1
        ours = {v.txid for v in self.versions}
        xip = [t for t in range(xmax - 4, xmax) if t not in ours]
        return f"{xmax - 4}:{xmax}:{','.join(map(str, xip))}"

    def read(
        self,
        client: str | None = "ui",
        *,
        version: int = -1,
        snapshot: str | None | bool = True,
        xmin: bool = True,
        status: str | None = None,
        http_status: int = 200,
        **fields: Any,
    ) -> EventRecord:
        """An API read of ``versions[version]``; ``snapshot=True`` means a fresh one."""
        returned = self.versions[version]
        return self.add(
            "api",
            "read",
            status=status or returned.status if http_status == 200 else None,
            body={
                "xmin": returned.txid % 2**32 if xmin else None,
                "snapshot": self.snapshot() if snapshot is True else snapshot or None,
                "client": client,
                "http_status": http_status,
            },
            **fields,
        )

    def read_during_commit(self, status: str, client: str = "ui") -> None:
        """A commit, and a read that began 1 ms before it and so returned the old version."""
        self.commit(status)
        txid = self.versions[-1].txid
        self.read(
            client,
            version=-2,
            snapshot=f"{txid - 2}:{txid + 1}:{txid}",
            at=self.clock - timedelta(milliseconds=1),
        )

    def probe(
        self, status: str | None = None, *, run: int | None = None, after_ms: int = 10
    ) -> EventRecord:
        sent = self.clock + timedelta(milliseconds=after_ms)
        body = {
            "sent_at": sent.isoformat(),
            "received_at": (sent + timedelta(milliseconds=4)).isoformat(),
            "http_status": 200,
            "run": run or self.run,
        }
        status = status or self.status
        return self.add("probe", "read", status=status, body=body, after_ms=after_ms)


def begin(h: History) -> None:
    """A lab run's start: the row inserted, the message enqueued, the probe's submit and
    first poll."""
    h.insert()
    h.broker("enqueue")
    h.add("probe", "submit", body={"run": h.run})
    h.probe()


def started() -> History:
    """A lab run up to its worker's first commit: begun, the message started, RUNNING
    committed."""
    h = History()
    begin(h)
    h.broker("start")
    h.commit(RUNNING)
    return h


def finish(h: History) -> EventRecord:
    """The worker commits COMPLETED and acks the message; returns the commit."""
    done = h.commit(COMPLETED)
    h.broker("ack")
    return done


def end(h: History) -> EventRecord:
    """The run's verdict, which the probe records after its last read."""
    return h.add("probe", "verdict", body={"run": h.run})


class Run:
    """A probe's run written as one chain of steps, each returning the run (the compare
    page's tests): the same events as ``History`` writes, ids from ``first_id``.
    ``attached`` starts the row at that status, as for a task attached after it was made."""

    def __init__(self, first_id: int = 100, attached: str | None = None) -> None:
        self.history = History(first_txid=901, first_id=first_id)
        if attached is not None:
            self.history.versions.append(Version(900, attached))

    @property
    def events(self) -> list[EventRecord]:
        return self.history.events

    def submit(self) -> Run:
        body = {"run": self.history.run, "http_status": 201}
        self.history.add("probe", "submit", status=PENDING, after_ms=0, body=body)
        return self

    def commit(self, status: str, after_ms: int = 10) -> Run:
        """The insert of the row, or a commit of ``status``."""
        if self.history.versions:
            self.history.commit(status, after_ms=after_ms)
        else:
            self.history.insert(status)
        return self

    def broker(self, *kinds: str) -> Run:
        for kind in kinds:
            self.history.broker(kind)
        return self

    def log(self, level: str = "error", message: str = "boom") -> Run:
        self.history.log(level, message)
        return self

    def polls(self, n: int, status: str | None = None) -> Run:
        """n probe polls, each answered by one API read of the newest commit (what the lab
        records), reporting ``status`` if given."""
        for _ in range(n):
            self.history.probe(status, after_ms=100)
            self.history.read(status=status, snapshot=False, after_ms=5)
        return self

    def verdict(self, expected: str, observed: str) -> Run:
        verdict = "pass" if expected == observed else "fail"
        body = {"run": self.history.run, "expected": expected, "observed": observed}
        self.history.add("probe", "verdict", body={**body, "verdict": verdict})
        return self


def stored_long_task(prefix: str, count: int) -> str:
    """A new task of ``count`` events shaped like the lab's, written to the store; its key."""
    import uuid

    from bench.dashboard import _insert_history

    key = f"{prefix}-{uuid.uuid4()}"
    _insert_history(key, count)
    return key


def the_stale_read(events: list[EventRecord], cause: str) -> Finding:
    """The history's one finding, which must be a stale read caused by ``cause``."""
    findings = check(events)
    assert kinds(findings) == ["stale_read"]
    assert findings[0].cause == cause
    return findings[0]


def kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


# --- events placed by hand ------------------------------------------------------------------


def event(
    id: int,
    source: str,
    kind: str,
    ms: float = 0,
    status: str | None = None,
    *,
    txid: int | None = None,
    task: str = "t",
    body: dict[str, Any] | None = None,
    **fields: Any,
) -> EventRecord:
    """One event with the id and the time (``ms`` after T0) the test chose; ``fields`` join
    its ``body``."""
    return EventRecord(
        id=id,
        source=source,
        kind=kind,
        task_key=task,
        status=status,
        at=T0 + timedelta(milliseconds=ms),
        txid=txid,
        body={**(body or {}), **fields},
    )


def commit(id: int, ms: float, old: str | None, new: str, txid: int, **body: Any) -> EventRecord:
    """A commit of the status as the trigger records it: an insert where there was no old
    status, an update otherwise."""
    kind = "insert" if old is None else "update"
    changes = {"old_status": old, "new_status": new, "changed": ["status"]}
    return event(id, "db", kind, ms, new, txid=txid, **{**changes, **body})


def api_read(
    id: int, ms: float, status: str = "RUNNING", xmin: int = 7, client: str = "web", **body: Any
) -> EventRecord:
    """An API read of version ``xmin``, answered 200."""
    return event(id, "api", "read", ms, status, xmin=xmin, client=client, http_status=200, **body)


def probe_read(
    id: int, ms: float, status: str = "RUNNING", run: int = 1, **body: Any
) -> EventRecord:
    """A poll of run ``run``'s probe, answered 200."""
    return event(id, "probe", "read", ms, status, run=run, http_status=200, **body)


# --- generated lifecycles -------------------------------------------------------------------


PROPERTY = settings(max_examples=200, deadline=None)
READS = st.lists(st.sampled_from(["ui", "ops", "probe", "error", "concurrent"]), max_size=3)


@dataclass
class Plan:
    """A lifecycle that obeys every rule: what a fault is inserted into."""

    retries: int
    outcome: str
    first_txid: int
    txid_step: int
    progress: bool
    ack_failure: bool  # the lab's actor returns after committing FAILED; others raise
    reads: list[list[str]]  # the reads in each gap between steps, cycled


plans = st.builds(
    Plan,
    retries=st.integers(0, 3),
    outcome=st.sampled_from([COMPLETED, FAILED]),
    first_txid=st.sampled_from([812, 2**32 - 2, 5 * 2**32 + 700]),
    txid_step=st.integers(1, 4),
    progress=st.booleans(),
    ack_failure=st.booleans(),
    reads=st.lists(READS, min_size=1, max_size=8),
)


def live(plan: Plan, fault: str | None = None) -> History:
    """Play a plan as the lab would, with ``fault`` inserted where it belongs."""
    h = History(first_txid=plan.first_txid, txid_step=plan.txid_step)
    gaps = iter(plan.reads * 20)

    def reads() -> None:
        for who in next(gaps):
            if who == "probe":
                h.probe()
            elif who == "error":
                h.read(who, http_status=503)
            elif who != "concurrent":
                h.read(who, snapshot=who == "ui")

    def commit(status: str) -> None:
        if "concurrent" in next(gaps):
            h.read_during_commit(status, client="ops")
        else:
            h.commit(status)

    if fault == "enqueue_before_commit":
        h.broker("enqueue")
        h.broker("start")
    h.insert()
    if fault != "enqueue_before_commit":
        h.broker("enqueue")
    reads()
    outcome = COMPLETED if fault == "forbidden_transition" else plan.outcome
    for attempt in range(1, plan.retries + 2):
        last = attempt == plan.retries + 1
        if not (fault == "enqueue_before_commit" and attempt == 1):
            h.broker("start", attempt=attempt)
        if last and fault == "forbidden_transition":
            break
        commit(RUNNING)
        reads()
        if plan.progress:
            h.commit(RUNNING, RUNNING)  # progress saved twice in one transaction
        if last and fault == "duplicate_execution":
            h.broker("start", attempt=attempt)
        if not last:
            commit(PENDING)
            h.log("error", f"attempt {attempt} failed", "TimeoutError")
            h.broker("fail", attempt=attempt)
            h.broker("retry", attempt=attempt)
            reads()
    if fault != "stuck":
        commit(outcome)
    if outcome == COMPLETED or plan.ack_failure:
        h.broker("ack", attempt=plan.retries + 1)
    else:
        h.broker("fail", attempt=plan.retries + 1)
        h.broker("nack", attempt=plan.retries + 1)
    reads()
    if fault == "terminal_overwrite":
        h.commit(OTHER_TERMINAL[outcome])
    h.probe()
    return h
