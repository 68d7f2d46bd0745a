"""The swimlane picture: lanes, attempts, commits, reads by version, findings; bounded and
escaped."""

from __future__ import annotations

import math
import random
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from dashboard.swimlane import LEFT, MAX_MARKS, PALETTE, RIGHT, WIDTH, Scale, swimlane, time_scale
from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord
from lifecycle.history import attempts, in_time_order
from lifecycle.timeline.layout import TimelineBuilder
from tests.histories import commit, event

pytestmark = pytest.mark.unit


def drawn(html: str) -> str:
    """The picture alone, without its summary in words that follows it."""
    return html[: html.index("</svg>") + len("</svg>")]


def picture(records: list[EventRecord], findings: list[Finding] = ()) -> str:  # type: ignore[assignment]
    records = in_time_order(records)
    views = TimelineBuilder().extend(records)
    roles = {"COMPLETED": "success", "FAILED": "failure"}
    return swimlane(views, attempts(records), findings, roles)


def test_it_draws_attempts_commits_reads_and_findings() -> None:
    svg = picture(
        [
            event(1, "db", "insert", 0, "PENDING", txid=100, new_status="PENDING"),
            event(2, "broker", "start", 10, message_id="m", attempt=1),
            event(
                3,
                "db",
                "update",
                20,
                "COMPLETED",
                txid=101,
                old_status="PENDING",
                new_status="COMPLETED",
            ),
            event(4, "broker", "ack", 30, message_id="m", attempt=1),
            event(5, "api", "read", 40, "COMPLETED", xmin=101, snapshot="100:102:"),
            event(6, "api", "read", 50, "PENDING", xmin=100, snapshot="100:102:"),
        ],
        [Finding("stale_read", (3, 6), "stale")],
    )

    assert svg.startswith('<svg class="swimlane"') and "</svg><p" in svg and svg.endswith("</p>")
    for title in ("Probe reads", "API reads", "Commits", "Broker", "Warnings"):
        assert f">{title}</text>" in svg
    assert svg.count('class="attempt attempt-ack"') == 1
    assert svg.count("<path") == 2  # the two commits
    assert ">COMPLETED</text>" in svg and 'fill="#2f855a"' in svg  # a success's colour
    # the two reads returned two versions: two colours
    assert f'fill="{PALETTE[0]}"' in svg and f'fill="{PALETTE[1]}"' in svg
    assert svg.count('class="proves"') == 2
    assert 'href="#event-6"' in svg and "<title>#6 " in svg


def test_nothing_in_the_picture_is_told_by_colour_alone_and_it_is_told_in_words() -> None:
    svg = picture(
        [
            event(1, "db", "insert", 0, "PENDING", txid=100, new_status="PENDING"),
            event(2, "broker", "start", 10, message_id="m", attempt=1),
            event(
                3, "db", "update", 20, "FAILED", txid=101, old_status="PENDING", new_status="FAILED"
            ),
            event(4, "broker", "fail", 30, message_id="m", attempt=1),
            event(5, "broker", "start", 35, message_id="m", attempt=2),
            event(
                6,
                "db",
                "update",
                38,
                "COMPLETED",
                txid=102,
                old_status="FAILED",
                new_status="COMPLETED",
            ),
            event(7, "broker", "ack", 39, message_id="m", attempt=2),
            event(8, "api", "read", 40, "COMPLETED", xmin=102, snapshot="100:103:"),
            event(9, "api", "read", 50, "FAILED", xmin=101, snapshot="100:103:"),
            event(10, "api", "read", 60, "PENDING"),
        ],
        [Finding("stale_read", (6, 9), "stale")],
    )
    # Two versions read: two shapes as well as two colours; a read of no version: hollow
    assert "<circle" in svg and "<rect" in svg.split("</svg>")[0].split('class="attempt')[-1]
    assert 'class="unversioned"' in svg
    # A failed attempt ends in ✕, a finished one in ✓; a proving event has a dashed ring
    assert svg.count('class="attempt-end"') == 2 and "✕</text>" in svg and "✓</text>" in svg
    assert svg.count('class="proof-ring"') == 2
    # The picture is a named group, described by the same history in words
    assert 'role="group"' in svg and 'aria-describedby="swimlane-summary"' in svg
    words = svg.split('id="swimlane-summary"')[-1]
    assert "10 events: 3 API reads, 3 commits, 4 broker steps." in words
    assert "2 attempts: attempt 1 ended fail; attempt 2 ended ack." in words
    assert "Status: PENDING → FAILED → COMPLETED." in words
    assert "2 events prove a finding" in words


def test_markup_from_the_observed_system_is_escaped() -> None:
    svg = picture([event(1, "db", "insert", 0, "<script>x</script>", txid=1)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_a_long_history_keeps_commits_and_buckets_the_reads() -> None:
    records = [event(1, "db", "insert", 0, "PENDING", txid=1)]
    records += [event(n, "api", "read", n, "PENDING") for n in range(2, 4 * MAX_MARKS)]
    records.append(
        event(
            4 * MAX_MARKS,
            "db",
            "update",
            4 * MAX_MARKS,
            "COMPLETED",
            txid=2,
            old_status="PENDING",
            new_status="COMPLETED",
        )
    )

    svg = picture(records)

    assert svg.count("<path") == 2
    assert svg.count("<circle") <= 1000  # at most a dot per pixel column
    assert " events from " in svg
    assert len(svg) < 300_000


# What a user reads off the picture: the SVG parsed, labels measured by their characters.

SVG = "{http://www.w3.org/2000/svg}"
CHAR_PX = 6.5  # a 10 px capital, about
DRAWABLE = WIDTH - LEFT - RIGHT


def seed_like() -> list[EventRecord]:
    """The seed scenario: a worker's whole attempt within 100 ms, then a probe and the
    API reading every 200 ms for 2 s."""
    records = [
        commit(1, 0, None, "PENDING", 100),
        event(2, "broker", "start", 20, message_id="m", attempt=1),
        commit(3, 30, "PENDING", "RUNNING", 101),
        event(4, "log", "warning", 60, message="boom"),
        commit(5, 90, "RUNNING", "COMPLETED", 102),
        event(6, "broker", "ack", 100, message_id="m", attempt=1),
    ]
    for i in range(1, 11):
        records.append(event(10 + i, "probe", "read", 200 * i, "COMPLETED"))
        records.append(event(30 + i, "api", "read", 200 * i, "COMPLETED", xmin=102))
    return records


def evenly_spread() -> list[EventRecord]:
    records = [
        commit(1, 0, None, "PENDING", 100),
        event(2, "broker", "start", 300, message_id="m", attempt=1),
        commit(3, 500, "PENDING", "RUNNING", 101),
        event(4, "log", "warning", 1000, message="boom"),
        commit(5, 1500, "RUNNING", "COMPLETED", 102),
        event(6, "broker", "ack", 1600, message_id="m", attempt=1),
    ]
    records += [event(10 + i, "probe", "read", 200 * i, "RUNNING") for i in range(1, 11)]
    return records


@dataclass
class Commit:
    event: int
    x: float
    y: float
    label: str | None
    box: tuple[float, float, float, float] | None  # left, top, right, bottom
    leader: tuple[float, float, float, float] | None = None  # from the mark to the label


def commits_drawn(svg: str) -> list[Commit]:
    """Each commit mark: its event, its diamond's centre, and its label with the box the
    label's characters take."""
    found = []
    for a in ET.fromstring(drawn(svg)).iter(f"{SVG}a"):
        path = a.find(f"{SVG}path")
        if path is None:
            continue
        x, top = (float(v) for v in path.get("d", "")[1:].split("l")[0].split())
        text = a.find(f"{SVG}text[@class='commit-label']")
        label, box = None, None
        if text is not None:
            label = text.text or ""
            width = len(label) * CHAR_PX
            left = {"start": 0.0, "middle": width / 2, "end": width}[
                text.get("text-anchor", "start")
            ]
            lx, baseline = float(text.get("x", 0)), float(text.get("y", 0))
            box = (lx - left, baseline - 9, lx - left + width, baseline + 2)
        line = a.find(f"{SVG}line[@class='leader']")
        leader = None
        if line is not None:
            x1, y1, x2, y2 = (float(line.get(k, 0)) for k in ("x1", "y1", "x2", "y2"))
            leader = (x1, y1, x2, y2)
        found.append(Commit(int(a.get("href", "#event-0")[7:]), x, top + 8, label, box, leader))
    return found


def attempt_bars(svg: str) -> list[tuple[float, float]]:
    return [
        (float(r.get("x", 0)), float(r.get("width", 0)))
        for r in ET.fromstring(drawn(svg)).iter(f"{SVG}rect")
        if "attempt" in r.get("class", "").split()
    ]


def tick_x(svg: str, text: str) -> float:
    (x,) = [
        float(t.get("x", 0))
        for t in ET.fromstring(drawn(svg)).iter(f"{SVG}text")
        if t.get("class") == "tick-label" and t.text == text
    ]
    return x


def mark_x(svg: str, event: int) -> float:
    """Where an event's mark (a dot or a commit's diamond) is drawn."""
    for a in ET.fromstring(drawn(svg)).iter(f"{SVG}a"):
        if a.get("href") == f"#event-{event}":
            circle, path = a.find(f"{SVG}circle"), a.find(f"{SVG}path")
            if circle is not None:
                return float(circle.get("cx", 0))
            if path is not None:
                return float(path.get("d", "")[1:].split()[0])
    raise AssertionError(f"no mark for event {event}")


def centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def pile_of(mark: Commit, commits: list[Commit]) -> list[Commit]:
    """A labelled mark and the unlabelled marks drawn on top of it: those chained to it
    less than 4 px apart (0.1 more: the SVG's x are rounded)."""
    ordered = sorted(commits, key=lambda c: c.x)
    i = j = ordered.index(mark)
    while i > 0 and ordered[i - 1].label is None and ordered[i].x - ordered[i - 1].x < 4.1:
        i -= 1
    while j + 1 < len(ordered) and ordered[j + 1].label is None:
        if ordered[j + 1].x - ordered[j].x >= 4.1:
            break
        j += 1
    return ordered[i : j + 1]


def assert_labels_unambiguous(commits: list[Commit]) -> None:
    """No two labels overlap, and each is nearer its own mark (or the marks it names, a
    pile drawn on top of each other) than any other commit's."""
    labelled = [c for c in commits if c.box is not None]
    for i, a in enumerate(labelled):
        for b in labelled[i + 1 :]:
            assert a.box and b.box
            apart = a.box[2] <= b.box[0] or b.box[2] <= a.box[0]
            assert apart or a.box[3] <= b.box[1] or b.box[3] <= a.box[1], (a, b)
        assert a.box and a.label and a.leader
        for b in labelled:  # its leader crosses no other label
            x1, y1, x2, y2 = a.leader
            for k in range(21):
                px, py = x1 + (x2 - x1) * k / 20, y1 + (y2 - y1) * k / 20
                inside = b.box and b.box[0] < px < b.box[2] and b.box[1] < py < b.box[3]
                assert b is a or not inside, (a, b)
        pile = pile_of(a, commits)
        # it names each of them, or says how many they are
        counted = re.search(r" \((\d+)\)$", a.label)
        assert len(pile) == (int(counted[1]) if counted else len(a.label.split(" → "))), a
        cx, cy = centre(a.box)
        own = min(math.dist((cx, cy), (c.x, c.y)) for c in pile)
        for other in commits:
            if other not in pile:
                assert own < math.dist((cx, cy), (other.x, other.y)), (a, other)


def test_each_commit_of_a_quick_attempt_is_labelled_by_its_own_mark() -> None:
    # Given the seed's history: three commits within 90 ms, reads for 2 s
    svg = picture(seed_like())

    # Then every status change has its own label, in time order
    commits = commits_drawn(svg)
    assert [(c.event, c.label) for c in commits] == [
        (1, "PENDING"),
        (3, "RUNNING"),
        (5, "COMPLETED"),
    ]
    # and no label overlaps another or sits nearer another commit's mark
    assert_labels_unambiguous(commits)
    # and each mark still links to its row and names its event
    assert '<a href="#event-3" class="mark"><title>#3 ' in svg


def test_a_quick_attempt_gets_room_when_the_probe_stretches_the_axis() -> None:
    svg = picture(seed_like())

    # The attempt's bar takes a real share of the width, not 4 %
    ((_, width),) = attempt_bars(svg)
    assert width >= 0.25 * DRAWABLE
    # and the picture says the axis is zoomed there, with a break where the scale changes
    assert 'class="axis-break"' in svg and 'class="zoom"' in svg and ">zoomed ×" in svg
    # Tick labels stay true: "+50 ms" lies between the commits at 30 and 90 ms, a third
    # of the way, and "+1.0 s" is where the reads at 1 s are drawn
    running, completed = mark_x(svg, 3), mark_x(svg, 5)
    assert tick_x(svg, "+50 ms") == pytest.approx(running + (completed - running) / 3, abs=0.2)
    assert tick_x(svg, "+1.0 s") == pytest.approx(mark_x(svg, 15), abs=0.2)  # the 5th read


def test_a_break_marks_only_a_change_of_scale_inside_the_picture() -> None:
    # Given the seed's history, the probe's first read 20 ms before the first commit
    records = [event(9, "probe", "read", -20, "PENDING"), *seed_like()]
    svg = picture(records)

    # Then the zoom starts at the picture's start (no sliver of another scale before it),
    # and its one break is where it ends
    breaks = [
        float(mark.get("points", "").split(",")[0]) + 6  # the // is drawn from x - 6
        for g in ET.fromstring(drawn(svg)).iter(f"{SVG}g")
        if g.get("class") == "axis-break"
        for mark in g.iter(f"{SVG}polygon")
    ]
    assert len(breaks) == 1 and breaks[0] > LEFT + 0.25 * DRAWABLE
    ((x, width),) = attempt_bars(svg)
    assert x < breaks[0] and width >= 0.25 * DRAWABLE


def test_an_evenly_spread_history_keeps_one_even_axis() -> None:
    svg = picture(evenly_spread())

    assert "axis-break" not in svg and 'class="zoom"' not in svg and 'class="cut"' not in svg
    commits = commits_drawn(svg)
    assert [c.label for c in commits] == ["PENDING", "RUNNING", "COMPLETED"]
    assert_labels_unambiguous(commits)
    # x is proportional to time: 500 ms is a third of the way from 0 to 1500 ms
    first, running, last = (c.x for c in commits)
    assert running - first == pytest.approx((last - first) / 3, abs=0.2)
    ((x, width),) = attempt_bars(svg)
    assert width == pytest.approx((last - first) * 1300 / 1500, abs=0.5)


def test_a_long_silence_is_cut_out_of_the_axis_and_time_named_where_it_resumes() -> None:
    # Given the seed's history and one more read a minute later
    records = seed_like()
    records.append(event(99, "api", "read", 60_000, "COMPLETED", xmin=102))
    svg = picture(records)

    # Then the minute without events is a narrow cut, named, and the last read's time is
    # written under it
    assert 'class="axis-cut"' in svg and "without events, cut out of the axis" in svg
    assert tick_x(svg, "+1:00.000") == pytest.approx(mark_x(svg, 99), abs=0.2)
    # and the reads of the first 2 s still spread over most of the width
    assert mark_x(svg, 20) - mark_x(svg, 11) > 0.4 * DRAWABLE
    ((_, width),) = attempt_bars(svg)
    assert width >= 0.25 * DRAWABLE


def test_commits_a_hair_apart_share_one_label_and_none_names_another_mark() -> None:
    # Given commits 0.1 ms apart (a mark each, overlapping), and the reported case: a
    # terminal commit ringed right after the first one
    records = [
        commit(1, 0, None, "PENDING", 100),
        event(2, "broker", "start", 20, message_id="m", attempt=1),
        commit(3, 21, "PENDING", "RUNNING", 101),
        event(4, "log", "error", 22, message="boom"),
    ]
    records.append(
        event(
            5,
            "db",
            "update",
            21.1,
            "COMPLETED",
            txid=102,
            old_status="RUNNING",
            new_status="COMPLETED",
        )
    )
    records.append(event(6, "broker", "ack", 24, message_id="m", attempt=1))
    records += [event(10 + i, "probe", "read", 200 * i, "COMPLETED") for i in range(1, 11)]
    svg = picture(records, [Finding("swallowed_error", (4, 5), "swallowed")])

    commits = commits_drawn(svg)
    assert [c.label for c in commits] == ["PENDING", "RUNNING → COMPLETED", None]
    assert_labels_unambiguous(commits)
    # The commit without a label of its own is still a link with its event in a title
    assert '<a href="#event-5" class="mark"><title>#5 ' in svg


def test_crowded_commits_get_labels_only_where_they_are_unambiguous() -> None:
    # Given forty commits 2 ms apart at the end of a 10 s history (progress updates, then
    # the last status change at the picture's right edge): too many to label all, and
    # the last label would have to be pushed in from the edge, over its neighbours
    records = [event(100 + i, "probe", "read", 250 * i, "RUNNING") for i in range(40)]
    records.append(commit(1, 9_920, None, "RUNNING", 1))
    records += [
        event(
            n,
            "db",
            "update",
            9_920 + 2 * n,
            "RUNNING",
            txid=n,
            old_status="RUNNING",
            new_status="RUNNING",
            changed=["progress"],
        )
        for n in range(2, 40)
    ]
    records.append(commit(40, 10_000, "RUNNING", "COMPLETED", 40))
    svg = picture(records)

    commits = commits_drawn(svg)
    assert len(commits) == 40
    assert_labels_unambiguous(commits)
    assert sum(c.label is not None for c in commits) >= 8
    # The last commit goes without a label rather than with one nearer another mark; it
    # is still a link that names its event
    assert commits[-1].label is None and '<a href="#event-40" class="mark"><title>#40 ' in svg


def test_a_retry_loops_thousand_status_changes_are_not_mislabelled() -> None:
    # Given a long history (bucketed) whose status flips every 5 ms for 6 s, then fails
    records = [commit(1, 0, None, "PENDING", 1)]
    for n in range(2, 1201):
        old, new = ("PENDING", "RUNNING") if n % 2 else ("RUNNING", "PENDING")
        records.append(commit(n, 5 * n, old, new, n))
    records.append(commit(1201, 6010, "RUNNING", "FAILED", 1201))
    records += [event(2000 + n, "api", "read", 5 * n + 2, "RUNNING") for n in range(1, 1201)]
    svg = picture(records)

    # Then the marks, touching one another, carry no label that could be another's
    commits = commits_drawn(svg)
    assert 200 < len(commits) < 1201
    assert_labels_unambiguous(commits)


def test_labels_stay_unambiguous_on_many_random_histories() -> None:
    # Given histories of 2 to 30 commits at random times, statuses of random lengths,
    # reads around them
    rng = random.Random(22)
    for _ in range(200):
        n = rng.randint(2, 30)
        times = sorted(rng.choice([rng.randint(0, 300), rng.randint(0, 5000)]) for _ in range(n))
        statuses = ["S" * rng.randint(1, 14) + str(i) for i in range(n)]
        records = [commit(1, times[0], None, statuses[0], 1)]
        records += [
            commit(i + 1, times[i], statuses[i - 1], statuses[i], i + 1) for i in range(1, n)
        ]
        records += [
            event(100 + i, "probe", "read", 250 * i, "X") for i in range(rng.randint(0, 30))
        ]
        svg = picture(records)

        # Then whatever is labelled is labelled unambiguously
        commits = commits_drawn(svg)
        assert len(commits) == n
        assert_labels_unambiguous(commits)
        assert any(c.label for c in commits)


def test_the_time_scale_is_monotonic_and_fills_the_width() -> None:
    # An attempt at the start, reads to 2 s, a silence, a last read at 60 s
    times = [0.0, 0.02, 0.03, 0.06, 0.09, 0.1, *(0.2 * i for i in range(1, 11)), 60.0]
    segments = time_scale(60.0, times, [(0.0, 0.0), (0.02, 0.1), (0.03, 0.03), (0.09, 0.09)])

    assert [s.kind for s in segments] == ["zoom", "even", "cut"]
    assert segments[0].x0 == LEFT and segments[-1].x1 == pytest.approx(WIDTH - RIGHT)
    scale = Scale(0.0, segments)
    xs = [scale.at(t) for t in sorted(times)]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
