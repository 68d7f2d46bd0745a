"""Hostile values in the fields that tie a record to its attempt and a read to its version.

``log`` and ``api`` events may name their Dramatiq attempt (``message_id``, ``attempt``);
``api`` reads carry the row version they returned (``xmin``) and their snapshot
(``pg_current_snapshot()`` text). Anyone with a runner's token can post any JSON in those
fields (``POST /api/events``), so every consumer of them is tried with what an outsider
would send: the pure logic (``Snapshot.parse``, ``check``, ``TimelineBuilder``,
``otlp.trace``) and the real routes (the task page, the JSON timeline, the OTLP export,
the event popover, a folded run's reads, the maintainer and the live websocket).

The rule: nothing raises, a history of ~10,000 events takes at most a couple of seconds,
and markup in these fields is escaped on pages. The first attack found three 500s (an
object for a broker step's message id or attempt, a superscript digit as an attempt on a
long page, a lone surrogate in a posted event) and six histories that took 4 to 38 s (reads
of xmins no commit wrote, of versions thousands of commits old, with 60 KB snapshots, huge
message ids, thousands of attempts, statuses never written); each is a test here.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from dashboard.asgi import application
from lifecycle.check import findings
from lifecycle.check.rules import check
from lifecycle.events import EventRecord, make_message
from lifecycle.feed.hub import get_hub
from lifecycle.history import (
    Snapshot,
    attempts,
    in_time_order,
    newest_seen,
    read_snapshot,
    read_xmin,
)
from lifecycle.models import Event, TaskCheck
from lifecycle.statuses import COMPLETED, PENDING, RUNNING
from lifecycle.timeline import otlp
from lifecycle.timeline.layout import TimelineBuilder
from tests.histories import T0, History

pytestmark = pytest.mark.integration
# The routes' tests use the real database; the pure ones need none (and no flush after).
uses_db = pytest.mark.django_db(transaction=True)

# Seconds of the process's CPU: "a couple of seconds" for a history of ~10,000 events (a
# quadratic walk takes minutes). CPU, not wall time: the suite's other shard (tests/shards.py)
# shares the two cores, and a wait is bounded apart (``within``).
BUDGET = 4.0
MARK = "\"'><img src=x onerror=alert(1)>"  # markup that must never reach a page raw
ATTR = '" onmouseover="pwn'  # an attribute break-out, in case only < and > are escaped

# What an outsider may put in message_id / attempt / xmin / snapshot (all JSON-encodable
# and storable in jsonb; NaN, Infinity and lone surrogates are tried on their own below).
HOSTILE: list[Any] = [
    {"a": MARK},
    [MARK, 1],
    [],
    {},
    MARK * 50,
    "x" * 60_000,
    12,
    0,
    -1,
    1.5,
    None,
    True,
    False,
    2**70,
    -(2**70),
    10**4000,
    "١:٣:٢",
    "1:2",
    "::",
    "10:5:",
    "-5:-1:-3",
    "9" * 5000 + ":1:",
]
HOSTILE_IDS = [f"{type(v).__name__}{i}" for i, v in enumerate(HOSTILE)]


@contextlib.contextmanager
def within(seconds: float, waits: float = 4.0) -> Iterator[None]:
    """Raise TimeoutError in the body once it has used ``seconds`` of the process's CPU, or
    once ``waits`` times as long has passed on the clock (a body stuck waiting)."""

    def expire(signum: int, frame: Any) -> None:
        if signum == signal.SIGPROF:
            raise TimeoutError(f"took more than {seconds} s of CPU")
        raise TimeoutError(f"took more than {seconds * waits} s of wall time")

    previous = {sig: signal.signal(sig, expire) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, seconds * waits)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- pure histories ---------------------------------------------------------------------


def long_running(n: int) -> History:
    """An insert, a move to RUNNING, then ``n - 2`` commits that keep RUNNING."""
    h = History(first_txid=1000)
    h.insert()
    for _ in range(1, n):
        h.commit(RUNNING)
    return h


def attempt_history(field: str, value: Any) -> History:
    """An attempt that logs an error and commits success, with ``value`` in ``field`` of
    the log record and of the API reads (the broker's own steps stay well formed)."""
    h = History(first_txid=100)
    h.insert()
    h.broker("enqueue")
    h.broker("start", pid=1, thread=1)
    h.commit(RUNNING)
    base = {"client": "c", "xmin": 101, "snapshot": "101:102:", "message_id": "m1", "attempt": 1}
    h.add("api", "read", status=RUNNING, body={**base, field: value})
    h.log("error", "boom", **{"message_id": "m1", "attempt": 1, "process": 1, field: value})
    h.commit(COMPLETED)
    h.add("api", "read", status=RUNNING, body={**base, field: value})
    h.add("api", "read", status=COMPLETED, body={**base, field: value, "client": "d"})
    h.broker("ack", pid=1)
    return h


def whole_pipeline(events: list[EventRecord]) -> dict[str, Any]:
    """What the task page and the OTLP route do with a history: check, lay out, export."""
    found = check(events, "FAILED")
    views = TimelineBuilder().extend(in_time_order(events))
    for view in views:
        json.dumps(view.as_json())
    trace = otlp.trace("task-1", views, found, status="COMPLETED")
    json.dumps(trace)
    return trace


# -- Snapshot.parse and the version helpers ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x" * 1_000_000,
        "1:2",
        "::",
        "a:b:c",
        "1:2:3:4",
        "9" * 5000 + ":1:",
        "1:" + "9" * 5000 + ":",
        "1:2:" + "9" * 5000,
        12,
        2**70,
        1.5,
        True,
        None,
        [1, 2, ""],
        {"xmin": 1},
        "",
        "1:2:,,,",
    ],
    ids=lambda t: f"{type(t).__name__}-{str(t)[:12]}",
)
def test_what_is_not_a_snapshot_parses_to_none_quickly(text: Any) -> None:
    started = time.perf_counter()
    parsed = Snapshot.parse(text)
    assert time.perf_counter() - started < 0.5
    if text == "1:2:,,,":
        assert parsed == Snapshot(1, 2, frozenset())  # empty xip entries are skipped
    else:
        assert parsed is None


@pytest.mark.parametrize(
    "text", ["١:٣:٢", "-5:-1:-3", "10:5:", "0:0:", f"-1:{2**70}:", " 1 : 2 : ", "1_0:2_0:"]
)
def test_an_odd_but_numeric_snapshot_never_raises_and_answers_every_question(text: str) -> None:
    # (These are accepted today: int() takes unicode digits, signs, spaces and "_".)
    parsed = Snapshot.parse(text)
    assert parsed is None or isinstance(parsed, Snapshot)
    if parsed is not None:
        for txid in (-(2**70), -1, 0, 1, 5, 2**63, 2**70):
            assert isinstance(parsed.sees(txid), bool)
        assert newest_seen(parsed, []) is None
        assert newest_seen(parsed, list(range(0, 10_000))) in (None, *range(10_000))


def test_ten_thousand_xip_entries_parse_in_a_few_ms() -> None:
    text = "1:2000000:" + ",".join(str(i) for i in range(1000, 11_000))
    started = time.perf_counter()
    parsed = Snapshot.parse(text)
    assert time.perf_counter() - started < 0.2
    assert parsed is not None and len(parsed.xip) == 10_000 and not parsed.sees(5000)


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_read_xmin_and_read_snapshot_take_only_what_they_can_use(value: Any) -> None:
    read = EventRecord(
        1, "api", "read", "t", "RUNNING", T0, body={"xmin": value, "snapshot": value}
    )
    xmin, snapshot = read_xmin(read), read_snapshot(read)
    assert xmin is None or (type(xmin) is int and xmin == value)
    assert snapshot is None or isinstance(snapshot, Snapshot)
    # and neither is taken from anything but an API read
    log = EventRecord(2, "log", "error", "t", body={"xmin": 5, "snapshot": "1:2:"})
    assert read_xmin(log) is None and read_snapshot(log) is None


# -- the checker, the timeline and the trace with hostile values -------------------------


@pytest.mark.parametrize("field", ["message_id", "attempt", "xmin", "snapshot"])
@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_values_in_log_and_api_records_never_raise(field: str, value: Any) -> None:
    trace = whole_pipeline(attempt_history(field, value).events)
    assert trace["resourceSpans"][0]["scopeSpans"][0]["spans"]


def test_a_record_that_names_its_attempt_by_a_number_is_still_tied_to_it() -> None:
    # message_id 12 (a number) and the start's "12" (a string) are one attempt to the checker
    h = History()
    h.insert()
    h.broker("start", message="12")
    h.commit(RUNNING)
    h.log("error", "boom", message_id=12, attempt=1)
    h.commit(COMPLETED)
    h.broker("ack", message="12")
    assert [f.kind for f in check(h.events)] == ["swallowed_error"]


@pytest.mark.parametrize(("field", "value"), [("message_id", {"a": 1}), ("attempt", [1])])
def test_a_broker_step_whose_message_id_or_attempt_is_not_a_scalar_still_pairs(
    field: str, value: Any
) -> None:
    h = History()
    h.insert()
    h.broker("start", **{field: value})
    h.broker("ack", **{field: value})
    assert len(attempts(h.events)) == 1
    whole_pipeline(h.events)


# -- crafted slow histories (~10,000 events) ---------------------------------------------


def test_thousands_of_commits_and_reads_whose_snapshots_see_nothing_or_all_stay_fast() -> None:
    # 5,000 commits and 5,000 reads: snapshots that see nothing, everything, or the
    # commits up to the last one, each found by bisection (~0.6 s)
    h = long_running(5000)
    for i in range(5000):
        snapshot = ["1:1:", "999999:999999:", "5000:5000:"][i % 3]
        h.add("api", "read", status=RUNNING, body={"client": f"c{i % 7}", "snapshot": snapshot})
    with within(BUDGET):
        whole_pipeline(h.events)


def test_reads_naming_an_xmin_no_commit_wrote_are_checked_quickly() -> None:
    h = long_running(8000)
    for _ in range(6000):
        h.add("api", "read", status=RUNNING, body={"client": "c", "xmin": 2**80})
    with within(BUDGET):
        check(h.events)


def test_reads_of_the_first_version_that_see_nothing_newer_are_checked_quickly() -> None:
    h = long_running(5000)
    early = T0 - timedelta(hours=1)
    for _ in range(5000):
        read = {"client": "c", "xmin": 1000, "snapshot": "1:1:"}
        h.add("api", "read", status=PENDING, at=early, body=read)
    with within(BUDGET):
        check(h.events)


def big_snapshot_reads(n: int) -> list[EventRecord]:
    """``n`` reads, each with a ~60 KB snapshot (10,000 xip entries: under the 64 KiB an
    event may weigh)."""
    xip = ",".join(str(i) for i in range(10_000, 20_000))
    h = History(first_txid=100)
    h.insert()
    h.commit(RUNNING)
    for _ in range(n):
        h.add("api", "read", status=RUNNING, body={"client": "c", "snapshot": f"1:200000:{xip}"})
    return h.events


def test_reads_with_huge_snapshots_are_checked_and_laid_out_quickly() -> None:
    events = big_snapshot_reads(2000)
    with within(BUDGET):
        TimelineBuilder().extend(events)
        check(events)


def test_log_records_with_a_huge_message_id_are_checked_quickly() -> None:
    huge = {f"k{i}": i for i in range(5000)}
    h = History()
    h.insert()
    for i in range(200):
        h.broker("start", message=f"m{i}")
        if i % 4 == 0:
            h.log("error", "boom", message_id=huge, attempt=1)
        h.broker("ack", message=f"m{i}")
    h.commit(COMPLETED)
    with within(0.5):  # a few hundred events: a quarter of the 10,000-event budget
        check(h.events)


def attempts_with_named_logs(attempts: int, logs: int) -> list[EventRecord]:
    """``attempts`` attempts, each acked, and ``logs`` log errors among them that name
    attempts not in the history."""
    h = History()
    h.insert()
    for i in range(attempts):
        h.broker("start", message=f"m{i}")
        for j in range(i * logs // attempts, (i + 1) * logs // attempts):
            h.log("error", "boom", message_id=f"other-{j}", attempt=1)
        h.broker("ack", message=f"m{i}")
    h.commit(COMPLETED)
    return h.events


def test_many_attempts_and_named_records_are_exported_and_checked_quickly() -> None:
    events = attempts_with_named_logs(4000, 5000)
    views = TimelineBuilder().extend(events)
    with within(BUDGET):
        otlp.trace("task-1", views, [])
    with within(BUDGET):
        check(events)


def test_reads_of_a_status_never_committed_are_checked_quickly() -> None:
    h = long_running(5000)
    for _ in range(5000):
        h.add("api", "read", status="NEVER", body={"client": "c", "snapshot": "1:1:"})
    with within(BUDGET):
        check(h.events)


# -- through the routes -------------------------------------------------------------------


def commit_rows(task: str, n: int = 3, first_txid: int = 1000) -> None:
    """The capture's rows for ``n`` commits (PENDING, RUNNING, then COMPLETED...)."""
    statuses = ["PENDING", "RUNNING", "COMPLETED"]
    Event.objects.bulk_create(
        Event(
            task_key=task,
            source="db",
            kind="insert" if i == 0 else "update",
            status=statuses[min(i, 2)],
            at=T0 + timedelta(milliseconds=100 * i + 5),
            txid=first_txid + i,
            body={
                "old_status": None if i == 0 else statuses[min(i - 1, 2)],
                "new_status": statuses[min(i, 2)],
                "table": "public.lab_task",
            },
        )
        for i in range(n)
    )


def message(
    task: str, source: str, kind: str, status: str | None = None, *, ms: int = 0, **body: Any
) -> dict[str, Any]:
    event = make_message(source=source, kind=kind, task=task, status=status, body=body)
    event["at"] = (T0 + timedelta(milliseconds=ms)).isoformat()
    return event


def post(client: Any, items: Any) -> Any:
    data = items if isinstance(items, str) else json.dumps(items)
    return client.post("/api/events", data=data, content_type="application/json")


def id_of(event: dict[str, Any]) -> int:
    return Event.objects.get(uuid=event["uuid"]).id


def hostile_task(task: str, field: str, values: list[Any]) -> list[dict[str, Any]]:
    """One attempt of a task whose log records and API reads carry each value in
    ``field`` (a pair of identical reads per value: a folded run)."""
    items = [
        message(task, "broker", "start", ms=50, message_id="m1", attempt=1, pid=1),
        message(task, "broker", "ack", ms=290, message_id="m1", attempt=1),
    ]
    base = {"xmin": 1001, "snapshot": "1001:1002:", "message_id": "m1", "attempt": 1}
    for n, value in enumerate(values):
        read = {**base, "client": f"c{n}", field: value}
        items.append(message(task, "api", "read", "RUNNING", ms=150 + n % 50, **read))
        items.append(message(task, "api", "read", "RUNNING", ms=151 + n % 50, **read))
        log = {"message": MARK, "message_id": "m1", "attempt": 1, field: value}
        items.append(message(task, "log", "error", ms=160 + n % 50, **log))
    return items


@uses_db
def test_hostile_values_in_log_and_api_events_are_served_by_every_route(
    client: Any, postgres: None
) -> None:
    for field in ["message_id", "attempt", "xmin", "snapshot"]:
        # Given a task whose log records and reads carry every hostile value in this
        # field, posted as any service would
        task = f"hostile-{field}-{uuid.uuid4()}"
        commit_rows(task)
        values = [v for v in HOSTILE if not (isinstance(v, str) and len(v) > 50_000)]
        values += [MARK, ATTR]
        items = hostile_task(task, field, values)
        response = post(client, items)
        assert response.status_code == 200, response.content
        assert response.json()["rejected"] == []

        # Then every route answers, and no markup reaches a page raw
        page = client.get(f"/tasks/{task}")
        assert page.status_code == 200, field
        html = page.content.decode()
        assert MARK not in html and ATTR not in html and "<img src=x" not in html, field
        timeline = client.get(f"/api/tasks/{task}/timeline")
        assert timeline.status_code == 200, field
        assert len(timeline.json()["events"]) == len(items) + 3
        assert client.get(f"/api/tasks/{task}/timeline?limit=7").status_code == 200
        assert client.get(f"/api/tasks/{task}/otlp").status_code == 200, field
        first, second = id_of(items[2]), id_of(items[3])  # a run of two identical reads
        assert client.get(f"/api/events/{first}").status_code == 200
        run = client.get(f"/reads/{task}?first={first}&last={second}")
        assert run.status_code == 200, field
        assert MARK not in run.content.decode()


@uses_db
def test_numbers_json_cannot_store_are_refused_with_a_reason(client: Any, postgres: None) -> None:
    # NaN and the infinities (Python's json takes them), a float past double range, and
    # an integer past Python's 4,300 digits: each answered 400, nothing stored
    for value in ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 5000]:
        task = f"numbers-{uuid.uuid4()}"
        event = message(task, "api", "read", "RUNNING", xmin="PLACEHOLDER", attempt=1)
        response = post(client, json.dumps(event).replace('"PLACEHOLDER"', value))
        assert response.status_code == 400, value
        assert not Event.objects.filter(task_key=task).exists()


@uses_db
def test_a_lone_surrogate_in_a_message_id_is_rejected_not_a_500(
    client: Any, postgres: None
) -> None:
    task = f"surrogate-{uuid.uuid4()}"
    good = message(task, "log", "error", message="fine", message_id="m1", attempt=1)
    bad = message(task, "log", "error", message="bad", message_id="PLACEHOLDER", attempt=1)
    text = json.dumps([good, bad]).replace('"PLACEHOLDER"', '"\\ud800"')
    response = post(client, text)
    assert response.status_code == 200
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert Event.objects.filter(task_key=task).count() == 1


@uses_db
@pytest.mark.parametrize(("field", "value"), [("message_id", {"a": 1}), ("attempt", [1])])
def test_a_broker_step_with_an_object_for_message_id_or_attempt_does_not_break_pages(
    client: Any, postgres: None, field: str, value: Any
) -> None:
    task = f"broker-{uuid.uuid4()}"
    commit_rows(task)
    ids = {"message_id": "m1", "attempt": 1, field: value}
    items = [
        message(task, "broker", "start", ms=50, **ids),
        message(task, "broker", "ack", ms=250, **ids),
    ]
    assert post(client, items).status_code == 200
    assert client.get(f"/api/tasks/{task}/timeline").status_code == 200  # this one holds
    assert client.get(f"/api/tasks/{task}/otlp").status_code == 200
    assert client.get(f"/tasks/{task}").status_code == 200


def long_history(task: str, n: int = 2100) -> None:
    """Past ``outline.WINDOWED_ABOVE``: commits that keep RUNNING and reads of each."""
    Event.objects.bulk_create(
        Event(
            task_key=task,
            source="db" if i % 2 == 0 else "api",
            kind="update" if i % 2 == 0 else "read",
            status="RUNNING",
            txid=5000 + i if i % 2 == 0 else None,
            at=T0 + timedelta(milliseconds=i),
            body={"old_status": "PENDING", "new_status": "RUNNING", "table": "t"}
            if i % 2 == 0
            else {"client": "c", "xmin": 5000 + i - 1},
        )
        for i in range(n)
    )


@uses_db
def test_a_long_history_with_a_superscript_attempt_still_opens(client: Any, postgres: None) -> None:
    task = f"long-attempt-{uuid.uuid4()}"
    long_history(task)
    items = [
        message(task, "broker", "start", ms=3000, message_id="m1", attempt="²"),
        message(task, "broker", "ack", ms=3001, message_id="m1", attempt="²"),
    ]
    assert post(client, items).status_code == 200
    assert client.get(f"/tasks/{task}").status_code == 200


@uses_db
def test_a_long_history_with_hostile_versions_and_attempts_opens_on_every_route(
    client: Any, postgres: None
) -> None:
    # Given a long history (windows, the outline, versions looked up by xmin in SQL) whose
    # reads and records carry huge, negative and odd values
    task = f"long-hostile-{uuid.uuid4()}"
    long_history(task)
    items = []
    for n, value in enumerate([2**70, -5, 10**4000, MARK, {"a": 1}, [1], 1.5]):
        items.append(
            message(
                task,
                "api",
                "read",
                "RUNNING",
                ms=3000 + n,
                client="z",
                xmin=value,
                snapshot=f"1:2:{'3,' * 20000}" if n == 0 else value,
                message_id=value,
                attempt=value,
            )
        )
        items.append(message(task, "log", "error", ms=3000 + n, message_id=value, attempt=value))
    items.append(message(task, "broker", "start", ms=3100, message_id=MARK, attempt=2**70))
    items.append(message(task, "broker", "ack", ms=3101, message_id=MARK, attempt=2**70))
    assert post(client, items).status_code == 200
    # Then the outline page, the paged JSON timeline and the export all answer
    page = client.get(f"/tasks/{task}")
    assert page.status_code == 200
    assert MARK not in page.content.decode()
    paged = client.get(f"/api/tasks/{task}/timeline?limit=5000")
    assert paged.status_code == 200 and paged.json()["next"] is None
    assert client.get(f"/api/tasks/{task}/otlp").status_code == 200


@uses_db
def test_the_maintainer_stores_findings_of_a_hostile_history(postgres: None) -> None:
    # Given a task whose records name their attempt with markup, and reads with hostile
    # versions, stored as the POST route stores them
    task = f"maintain-{uuid.uuid4()}"
    commit_rows(task)
    rows = [
        ("broker", "start", None, 50, {"message_id": MARK, "attempt": MARK, "pid": 1}),
        ("log", "error", None, 160, {"message": "x", "message_id": MARK, "attempt": MARK}),
        ("api", "read", "RUNNING", 170, {"xmin": 2**70, "snapshot": "9" * 5000 + ":1:"}),
        ("api", "read", "RUNNING", 171, {"xmin": [1], "snapshot": {"a": 1}, "attempt": []}),
        ("log", "error", None, 172, {"message_id": {"a": 1}, "attempt": 10**4000}),
        ("broker", "ack", None, 260, {"message_id": MARK, "attempt": MARK}),
    ]
    Event.objects.bulk_create(
        Event(
            task_key=task,
            source=source,
            kind=kind,
            status=status,
            at=T0 + timedelta(milliseconds=ms),
            body=body,
        )
        for source, kind, status, ms, body in rows
    )
    # When the maintainer's refresh checks it
    findings.refresh([task])
    # Then its findings are stored: the swallowed error, tied by the attempt it names
    row = TaskCheck.objects.get(task_key=task)
    assert "swallowed_error" in row.kinds
    assert row.event_count == len(rows) + 3


@uses_db
def test_a_task_page_with_huge_message_ids_answers_quickly(client: Any, postgres: None) -> None:
    task = f"huge-ids-{uuid.uuid4()}"
    commit_rows(task, 1)
    huge = {f"k{i}": i for i in range(5000)}
    steps, logs = [], []
    for i in range(160):
        ms = 10 + 3 * i
        steps.append(message(task, "broker", "start", ms=ms, message_id=f"m{i}", attempt=1))
        if i % 4 == 0:
            logs.append(message(task, "log", "error", ms=ms + 1, message_id=huge, attempt=1))
        steps.append(message(task, "broker", "ack", ms=ms + 2, message_id=f"m{i}", attempt=1))
    for batch in (steps, logs[:20], logs[20:]):  # under the 2.5 MB a request may weigh
        assert post(client, batch).status_code == 200
    with within(BUDGET):
        assert client.get(f"/tasks/{task}").status_code == 200


# -- the live websocket ---------------------------------------------------------------------


@pytest.fixture
def _public_read(settings: Any) -> None:
    settings.LIFECYCLE_PUBLIC_READ = True  # these sockets carry no session


@pytest.fixture
async def hub(postgres: None, _public_read: None) -> Any:
    yield get_hub()
    await get_hub().stop()


@database_sync_to_async
def store_events(task: str, rows: list[tuple[str, str, str | None, dict[str, Any]]]) -> list[int]:
    made = [
        Event.objects.create(task_key=task, source=source, kind=kind, status=status, body=body)
        for source, kind, status, body in rows
    ]
    return [e.id for e in made]


HOSTILE_ROWS: list[tuple[str, str, str | None, dict[str, Any]]] = [
    ("broker", "start", None, {"message_id": {"a": MARK}, "attempt": [1], "pid": 1}),
    ("db", "update", "RUNNING", {"old_status": "PENDING", "new_status": "RUNNING"}),
    ("api", "read", "RUNNING", {"client": MARK, "xmin": 2**70, "snapshot": MARK}),
    ("api", "read", "RUNNING", {"client": "c", "xmin": -1, "snapshot": "9" * 5000 + ":1:"}),
    ("api", "read", "RUNNING", {"xmin": [MARK], "snapshot": {"a": 1}, "message_id": [MARK]}),
    ("log", "error", None, {"message": MARK, "message_id": {"a": MARK}, "attempt": MARK}),
    ("log", "warning", None, {"message_id": 10**4000, "attempt": -(2**70)}),
    ("broker", "ack", None, {"message_id": {"a": MARK}, "attempt": [1]}),
]


async def received_html(communicator: WebsocketCommunicator, ids: list[int]) -> str:
    """Fragments until every id's row came (or 5 s)."""
    html = ""
    deadline = time.monotonic() + 5
    while not all(f'id="event-{i}"' in html for i in ids) and time.monotonic() < deadline:
        try:
            html += await communicator.receive_from(timeout=max(deadline - time.monotonic(), 0.1))
        except TimeoutError:
            break
    return html


async def connect(path: str, have: list[int]) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    )
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "hello", "have": have, "tasks": []})
    return communicator


@uses_db
async def test_the_live_timeline_carries_hostile_events_escaped(hub: Any) -> None:
    # Given a task page's socket
    task = f"live-{uuid.uuid4()}"
    first = await store_events(task, [("db", "insert", "PENDING", {"new_status": "PENDING"})])
    communicator = await connect(f"/ws/tasks/{task}", first)
    # When hostile events arrive live
    ids = await store_events(task, HOSTILE_ROWS)
    html = await received_html(communicator, ids)
    # Then each comes as a row, escaped, and the consumer lives on
    assert all(f'id="event-{i}"' in html for i in ids), html[:500]
    assert MARK not in html and "<img src=x" not in html
    later = await store_events(task, [("api", "read", "COMPLETED", {"client": "z"})])
    assert f'id="event-{later[0]}"' in await received_html(communicator, later)
    await communicator.disconnect()

    # And a page that reconnects with nothing catches up on the same history
    communicator = await connect(f"/ws/tasks/{task}", [])
    html = await received_html(communicator, [*first, *ids, *later])
    assert all(f'id="event-{i}"' in html for i in [*first, *ids, *later])
    assert MARK not in html
    await communicator.disconnect()
