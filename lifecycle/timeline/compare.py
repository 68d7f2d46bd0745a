"""Two runs of one scenario side by side: their lifecycles as steps, aligned. Pure logic.

A run's history becomes *steps*, one normalized token per meaningful event: a commit is
its status transition, a broker step its kind, a log record its level, and consecutive
reads (API and probe) that returned the same status are one step, so runs that polled a
different number of times still line up.

Two runs of one scenario never have quite the same history: a poll lands while the task
is RUNNING in one run and not in the other, the enqueue and the start of a message are
stamped by two processes a millisecond apart. Rows that differ only like that are kept
but marked ``timing``; the first row that really ``differs`` is where the runs diverge.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any, Literal, get_args

from lifecycle.events import EventRecord
from lifecycle.timeline.layout import LANE_LIST

Token = tuple[Any, ...]
RowState = Literal["same", "timing", "differs"]
ROW_STATES: tuple[RowState, ...] = get_args(RowState)
Pair = tuple["Step | None", "Step | None"]

READ_SOURCES = frozenset({"api", "probe"})
# A read returns what was committed between its request and its answer (the probe knows
# both ends; an API read is stamped once). The trigger stamps a commit when the row is
# written, a little before it commits: allow that much on either side.
READ_TOLERANCE_MS = 50.0
LONGEST_READ_MS = 60_000.0  # a read's latency past this is not believed (the checker's poll)
# A step one run has a few rows before the other is the same step, stamped in another order.
REORDER_WINDOW = 3
# Past this many pairings to weigh (two runs of 500 steps each, ~0.2 s), align by greedy
# blocks instead: a page that answers beats a perfect alignment.
MAX_CELLS = 250_000

# A step's tag: the timeline's word for its lane, but for the lane of reads, where the
# comparison folds the API's and the probe's reads together.
LANE_TITLES = {lane.name: lane.word for lane in LANE_LIST if lane.name != "api"} | {
    "reads": "reads"
}
BROKER_PHRASES = {
    "enqueue": "enqueued the message",
    "start": "started the message",
    "ack": "acked the message",
    "fail": "failed an attempt",
    "retry": "scheduled a retry",
    "nack": "nacked the message",
    "skip": "skipped the message",
}


@dataclass
class Step:
    """One step of a run's lifecycle: one event, or several consecutive same reads."""

    lane: str  # "db", "broker", "log", "reads", "probe"
    token: Token  # what must be equal for two runs to have taken the same step
    label: str  # what the step's cell says: "RUNNING → FAILED"
    phrase: str  # how a sentence says it: "committed FAILED"
    first_id: int
    last_id: int
    offset_ms: float  # of its first event, from the run's first event
    end_ms: float  # of its last event
    status: str | None = None  # the status read, committed (the new one) or observed
    old_status: str | None = None  # for a commit, the status it replaced
    detail: str = ""
    count: int = 1
    sources: dict[str, int] = field(default_factory=dict)  # reads: how many from each source
    # reads: from the request to the answer of the first read and of the last one
    first_window: tuple[float, float] = (0.0, 0.0)
    last_window: tuple[float, float] = (0.0, 0.0)

    @property
    def lane_title(self) -> str:
        return LANE_TITLES.get(self.lane, self.lane)

    @property
    def offset_text(self) -> str:
        ms = self.offset_ms
        return f"+{ms:.0f} ms" if ms < 10_000 else f"+{ms / 1000:.1f} s"

    @property
    def long_phrase(self) -> str:
        """The phrase with the transition, for when both runs' short phrases read the same."""
        if self.lane == "db" and self.token[1] == "update":
            return f"committed {self.old_status} → {self.status}"
        return self.phrase


@dataclass
class Row:
    number: int  # 1-based: "step N" on the page and in the sentence
    left: Step | None
    right: Step | None
    state: RowState
    note: str = ""  # why a timing row is no divergence

    @property
    def same(self) -> bool:
        return self.state == "same"


@dataclass
class Comparison:
    rows: list[Row]
    divergence: Row | None  # the first row whose state is "differs"

    def count(self, state: RowState) -> int:
        return sum(1 for row in self.rows if row.state == state)


# Steps


def lifecycle_steps(records: Sequence[EventRecord]) -> list[Step]:
    """The run's steps, from its task's history in time order (a read after the commit it
    saw, ``_as_it_happened``)."""
    origin = next((r.at for r in records if r.at is not None), None)
    steps: list[Step] = []
    for record in _as_it_happened(records, origin):
        offset = _offset(record.at, origin)
        if record.source in READ_SOURCES and record.kind == "read":
            last = steps[-1] if steps else None
            if last is not None and last.lane == "reads" and last.status == record.status:
                _add_read(last, record, offset)
            else:
                steps.append(_read_step(record, offset))
        else:
            steps.append(_step(record, offset))
    return steps


def _as_it_happened(records: Sequence[EventRecord], origin: datetime | None) -> list[EventRecord]:
    """The history with each read placed after the commit it returned: a probe's read is
    stamped when it was sent, so one sent just before a commit and answered after it
    returns that commit's status, stamped before it. Such a read (of a status the row did
    not hold yet, committed within the read's window and the tolerance) comes after that
    commit, as its answer did: the commit is the step, the read what it caused. A read of a
    status committed later than that stays where it is (it read the future: a divergence)."""
    commits: dict[Any, list[int]] = {}  # each status: the indexes of its commits, rising
    for i, record in enumerate(records):
        if record.source == "db":
            commits.setdefault(record.body.get("new_status", record.status), []).append(i)
    placed: list[EventRecord] = []
    after: dict[int, list[EventRecord]] = {}  # a commit's index: the reads that saw it
    held: Any = None  # the status the commits so far left the row in
    for i, record in enumerate(records):
        if record.source == "db":
            held = record.body.get("new_status", record.status)
        elif record.source in READ_SOURCES and record.kind == "read" and record.status != held:
            seen = _commit_seen(records, i, commits.get(record.status, ()), origin)
            if seen is not None:
                after.setdefault(seen, []).append(record)
                continue
        placed.append(record)
        placed.extend(after.pop(i, ()))
    return placed


def _commit_seen(
    records: Sequence[EventRecord], i: int, commits: Sequence[int], origin: datetime | None
) -> int | None:
    """The index of the commit of the status read ``records[i]`` returned (``commits``:
    that status's commits), if the first one after the read was written while the read
    was on its way (its window, with the tolerance; the records are in time order)."""
    k = bisect_right(commits, i)
    if k == len(commits):
        return None
    read, j = records[i], commits[k]
    end = _offset(read.at, origin) + _latency(read)
    return j if _offset(records[j].at, origin) <= end + READ_TOLERANCE_MS else None


def _latency(read: EventRecord) -> float:
    """How long a read was on its way, as it says (ms): what an observed system sent is
    taken only when it is a number from 0 to LONGEST_READ_MS (NaN, infinite or negative:
    0), so that no read's window reaches across the whole history."""
    latency = read.body.get("latency_ms")
    if isinstance(latency, bool) or not isinstance(latency, int | float):
        return 0.0
    return float(latency) if 0 <= latency <= LONGEST_READ_MS else 0.0


def _offset(at: datetime | None, origin: datetime | None) -> float:
    if at is None or origin is None:
        return 0.0
    return (at - origin).total_seconds() * 1000


def _read_step(r: EventRecord, offset: float) -> Step:
    step = Step(
        lane="reads",
        token=("reads", r.status),
        label="",
        phrase=f"read {r.status or 'nothing'}",
        first_id=r.id,
        last_id=r.id,
        offset_ms=offset,
        end_ms=offset,
        status=r.status,
        count=0,
    )
    _add_read(step, r, offset)
    return step


def _add_read(step: Step, r: EventRecord, offset: float) -> None:
    window = (offset, offset + _latency(r))
    if not step.count:
        step.first_window = window
    step.count += 1
    step.last_id, step.end_ms, step.last_window = r.id, offset, window
    step.sources[r.source] = step.sources.get(r.source, 0) + 1
    step.label = f"read {step.status or 'nothing'}" + (f" ×{step.count}" if step.count > 1 else "")
    by_source = sorted(step.sources.items(), reverse=True)  # probe first, then API
    step.detail = " · ".join(f"{n} {'API' if s == 'api' else s}" for s, n in by_source)


def _step(r: EventRecord, offset: float) -> Step:
    if r.source == "db":
        fields = _commit(r)
    elif r.source == "broker":
        fields = {
            "lane": "broker",
            "token": ("broker", r.kind),
            "label": r.kind,
            "phrase": BROKER_PHRASES.get(r.kind, f"had broker step {r.kind}"),
            "detail": f"attempt {r.body['attempt']}" if r.body.get("attempt") else "",
        }
    elif r.source == "log":
        level = r.kind.upper()
        fields = {
            "lane": "log",
            "token": ("log", r.kind),
            "label": f"{level} logged",
            "phrase": f"logged an {level}",
            "detail": str(r.body.get("message") or "")[:160],
        }
    elif r.source == "probe" and r.kind == "verdict":
        observed, verdict = r.body.get("observed"), str(r.body.get("verdict") or "none")
        fields = {
            "lane": "probe",
            "token": ("probe", "verdict", observed),
            "label": f"verdict {verdict}",
            "phrase": f"ended with verdict {verdict} (observed {observed or 'nothing'})",
            "detail": f"observed {observed or 'nothing'}",
            "status": observed,
        }
    else:  # the probe's submit, or a kind this version does not know
        http = r.body.get("http_status")
        fields = {
            "lane": "probe" if r.source == "probe" else "log",
            "token": (r.source, r.kind, r.status),
            "label": r.kind,
            "phrase": f"{r.source} {r.kind}",
            "detail": f"HTTP {http}" if http else "",
            "status": r.status,
        }
    return Step(first_id=r.id, last_id=r.id, offset_ms=offset, end_ms=offset, **fields)


def _commit(r: EventRecord) -> dict[str, Any]:
    b = r.body
    old, new = b.get("old_status"), b.get("new_status", r.status)
    parts = (f"txn {r.txid}" if r.txid else "", b.get("application_name"))
    writer = " · ".join(p for p in parts if p)
    fields: dict[str, Any] = {"lane": "db", "status": new, "old_status": old, "detail": writer}
    if r.kind == "insert":
        return {
            **fields,
            "token": ("db", "insert", None, new),
            "label": f"created {new}",
            "phrase": f"created the row as {new}",
        }
    if r.kind == "delete":
        return {
            **fields,
            "token": ("db", "delete", old, None),
            "label": "deleted",
            "phrase": "deleted the row",
        }
    if old != new:
        return {
            **fields,
            "token": ("db", "update", old, new),
            "label": f"{old} → {new}",
            "phrase": f"committed {new}",
        }
    # The status stayed: which columns changed is what tells two such commits apart.
    changed = tuple(sorted(c for c in b.get("changed") or [] if c != "updated_at"))
    what = ", ".join(changed) or "the row"
    return {
        **fields,
        "token": ("db", "update", old, new, *changed),
        "label": f"updated {what}",
        "phrase": f"updated {what}",
    }


# Alignment


def align(left: Sequence[Step], right: Sequence[Step]) -> Comparison:
    """Rows of (left step, right step): the runs' lifecycles side by side."""
    pairs: list[Pair] = []
    i = j = 0
    for mi, mj in [*_matches(left, right), (len(left), len(right))]:
        pairs.extend(_pair_by_lane(left[i:mi], right[j:mj]))
        if mi < len(left):
            pairs.append((left[mi], right[mj]))
        i, j = mi + 1, mj + 1
    rows = [Row(n, a, b, _state(a, b)) for n, (a, b) in enumerate(pairs, start=1)]
    _mark_reordered(rows)
    _mark_timely_reads(rows, left, right)
    return Comparison(rows, next((row for row in rows if row.state == "differs"), None))


def _state(a: Step | None, b: Step | None) -> RowState:
    return "same" if a is not None and b is not None and a.token == b.token else "differs"


def _weight(step: Step) -> int:
    # Reads are where two runs differ most by chance; commits and broker steps are the
    # lifecycle to line up on.
    return 1 if step.lane == "reads" else 3


def _matches(left: Sequence[Step], right: Sequence[Step]) -> list[tuple[int, int]]:
    """The pairs of equal steps, in order, that weigh the most (a weighted LCS)."""
    shortest = min(len(left), len(right))
    prefix = 0
    while prefix < shortest and left[prefix].token == right[prefix].token:
        prefix += 1
    suffix = 0
    while suffix < shortest - prefix and left[-1 - suffix].token == right[-1 - suffix].token:
        suffix += 1
    a, b = left[prefix : len(left) - suffix], right[prefix : len(right) - suffix]
    head = [(k, k) for k in range(prefix)]
    tail = [(len(left) - suffix + k, len(right) - suffix + k) for k in range(suffix)]
    middle = _greedy_matches(a, b) if len(a) * len(b) > MAX_CELLS else _weighted_lcs(a, b)
    return head + [(prefix + x, prefix + y) for x, y in middle] + tail


def _weighted_lcs(a: Sequence[Step], b: Sequence[Step]) -> list[tuple[int, int]]:
    n, m = len(a), len(b)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for x in range(n - 1, -1, -1):
        row, below = score[x], score[x + 1]
        for y in range(m - 1, -1, -1):
            best = max(below[y], row[y + 1])
            if a[x].token == b[y].token:
                best = max(best, below[y + 1] + _weight(a[x]))
            row[y] = best
    found: list[tuple[int, int]] = []
    x = y = 0
    while x < n and y < m:
        if a[x].token == b[y].token and score[x][y] == score[x + 1][y + 1] + _weight(a[x]):
            found.append((x, y))
            x, y = x + 1, y + 1
        elif score[x + 1][y] >= score[x][y + 1]:
            x += 1
        else:
            y += 1
    return found


def _greedy_matches(a: Sequence[Step], b: Sequence[Step]) -> list[tuple[int, int]]:
    matcher = SequenceMatcher(None, [s.token for s in a], [s.token for s in b], autojunk=False)
    return [(m.a + k, m.b + k) for m in matcher.get_matching_blocks() for k in range(m.size)]


def _pair_by_lane(left: Sequence[Step], right: Sequence[Step]) -> list[Pair]:
    """In a stretch that differs, put a commit beside a commit and a read beside a read."""
    lanes = SequenceMatcher(None, [s.lane for s in left], [s.lane for s in right], autojunk=False)
    pairs: list[Pair] = []
    for tag, i1, i2, j1, j2 in lanes.get_opcodes():
        if tag == "equal":
            pairs.extend(zip(left[i1:i2], right[j1:j2], strict=True))
        else:
            pairs.extend((s, None) for s in left[i1:i2])
            pairs.extend((None, s) for s in right[j1:j2])
    return pairs


def _mark_reordered(rows: list[Row]) -> None:
    """A step only one side has, matched by the same step only the other side has nearby."""
    for i, row in enumerate(rows):
        mine = _one_side(row)
        if mine is None:
            continue
        for other in rows[max(0, i - REORDER_WINDOW) : i + REORDER_WINDOW + 1]:
            theirs = _one_side(other)
            if (
                theirs is not None
                and (row.left is None) != (other.left is None)
                and theirs.token == mine.token
            ):
                row.state = other.state = "timing"
                row.note = other.note = "the same step, recorded in another order"
                break


def _one_side(row: Row) -> Step | None:
    """The step of a row that still differs and has a step on one side only."""
    if row.state != "differs" or (row.left is None) == (row.right is None):
        return None
    return row.left or row.right


def _mark_timely_reads(rows: list[Row], left: Sequence[Step], right: Sequence[Step]) -> None:
    """Reads that differ only in when the polls landed.

    One run's poll caught the task RUNNING and the other's did not: no divergence, as long
    as each read returned what its own run had committed then, and a status the other run
    committed too. A stale read, or a status only one run ever had, stays a divergence.
    """
    left_committed = {s.status for s in left if s.lane == "db"}
    right_committed = {s.status for s in right if s.lane == "db"}
    for row in rows:
        if row.state != "differs":
            continue
        sides = [
            (step, run, theirs)
            for step, run, theirs in (
                (row.left, left, right_committed),
                (row.right, right, left_committed),
            )
            if step is not None
        ]
        if all(
            step.lane == "reads" and step.status in theirs and _read_what_was_committed(step, run)
            for step, run, theirs in sides
        ):
            row.state = "timing"
            row.note = "polls that landed at other moments; each read what its run had committed"


def _read_what_was_committed(read: Step, steps: Sequence[Step]) -> bool:
    """Whether the first and the last of these reads returned what the row held then.

    Checking both ends keeps a long run of stale reads (a snapshot that never moves on)
    from passing as timing.
    """
    commits = [(s.offset_ms, s.status) for s in steps if s.lane == "db"]
    return all(
        read.status in _held_during(*window, commits)
        for window in (read.first_window, read.last_window)
    )


def _held_during(
    start: float, end: float, commits: list[tuple[float, str | None]]
) -> set[str | None]:
    """The statuses the row held at some time between ``start`` and ``end``, with tolerance."""
    start, end = start - READ_TOLERANCE_MS, end + READ_TOLERANCE_MS
    current: str | None = None
    held: set[str | None] = set()
    for at, status in commits:
        if at <= start:
            current = status
        elif at <= end:
            held.add(status)
    return held | {current}


# The sentence


def divergence_sentence(comparison: Comparison, left_run: int, right_run: int) -> str:
    """One sentence for the top of the page: where the runs part, or that they do not."""
    row = comparison.divergence
    if row is None:
        if not comparison.rows:
            return "Neither run has recorded an event yet."
        steps, timing = len(comparison.rows), comparison.count("timing")
        but = f"; {timing} of them differ only in timing" if timing else ""
        return f"The runs follow the same lifecycle: {_plural(steps, 'step')}{but}."
    where = f"The runs diverge at step {row.number}: "
    if row.left is not None and row.right is not None:
        left, right = row.left.phrase, row.right.phrase
        if left == right:
            left, right = row.left.long_phrase, row.right.long_phrase
        return f"{where}run {left_run} {left} where run {right_run} {right}."
    if row.left is not None:
        return f"{where}run {left_run} {row.left.phrase}; run {right_run} has no such step."
    assert row.right is not None
    return f"{where}run {right_run} {row.right.phrase}; run {left_run} has no such step."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
