"""Runs of identical reads folded into one row, on the page and live, and the windows of
a long timeline. Pure logic: no database, no server."""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from dashboard import fragments
from dashboard.fragments import LiveRows, rows_fragment
from dashboard.render import row_html, rows_html, run_html, window_html
from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord
from lifecycle.store.outline import WINDOW, Column, format_cursor, parse_cursor, windows_of
from lifecycle.timeline.layout import (
    Collapser,
    ReadRun,
    TimelineBuilder,
    collapse,
    pin,
    run_summary,
)
from tests.histories import api_read, commit, probe_read

pytestmark = pytest.mark.unit


def rows_of(records: list[EventRecord]) -> list[list[int]]:
    """Each row's event ids: one for an event, several for a run of reads."""
    rows = collapse(TimelineBuilder().extend(records))
    return [[v.id for v in r.views] if isinstance(r, ReadRun) else [r.id] for r in rows]


def test_a_run_of_identical_reads_is_one_row_and_a_commit_ends_it() -> None:
    # Given twenty polls that saw RUNNING, a commit to COMPLETED, then five that saw it
    records = [api_read(i, i * 100) for i in range(1, 21)]
    records.append(commit(21, 2050, "RUNNING", "COMPLETED", txid=8))
    records += [api_read(i, i * 100, "COMPLETED", xmin=8) for i in range(22, 27)]
    # When laid out: three rows, and the two commits' neighbours are not folded together
    assert rows_of(records) == [list(range(1, 21)), [21], list(range(22, 27))]


def test_reads_fold_only_with_reads_of_the_same_source_client_status_and_version() -> None:
    records = [
        api_read(1, 0),
        probe_read(2, 1),  # the probe's poll, between the API's reads: its own lane
        api_read(3, 2),
        api_read(4, 3, client="mobile"),  # another client: its own run
        api_read(5, 4),
        api_read(6, 5, xmin=9),  # another version: a new run
        api_read(7, 6, "FAILED", xmin=9),  # another status: a new run
        probe_read(8, 7),
        probe_read(9, 8, error="timed out", status=None),  # a failed poll is not "saw RUNNING"
    ]
    assert rows_of(records) == [[1, 3, 5], [2, 8], [4], [6], [7], [9]]


def test_a_read_that_proves_a_finding_stays_a_row_of_its_own() -> None:
    views = TimelineBuilder().extend([api_read(i, i) for i in range(1, 7)])
    pin(views, [Finding("stale_read", (4,), "old version")])
    rows = collapse(views)
    assert [[v.id for v in r.views] if isinstance(r, ReadRun) else [r.id] for r in rows] == [
        [1, 2, 3],
        [4],
        [5, 6],
    ]
    # And the run's row shows count, span and version; the lone read keeps its mark
    html = rows_html(rows)
    assert 'id="run-1"' in html and 'data-count="3"' in html and "×3" in html
    assert 'id="event-4"' in html and "has-finding" in html


def test_a_run_says_what_it_returned_and_over_how_long() -> None:
    views = TimelineBuilder().extend([api_read(1, 0), api_read(2, 1500), api_read(3, 2000)])
    run = collapse(views)[0]
    assert isinstance(run, ReadRun)
    assert run_summary(run) == "reads returned RUNNING · web · 2.0 s, to 12:00:02.000"
    html = run_html(run)
    assert 'data-testid="read-run"' in html and 'aria-controls="run-1-events"' in html
    assert 'data-last-id="3"' in html and "×3" in html


def test_a_run_of_an_observed_system_is_escaped() -> None:
    evil = "<img src=x onerror=alert(1)>"
    views = TimelineBuilder().extend(
        [api_read(1, 0, evil, client=evil), api_read(2, 1, evil, client=evil)]
    )
    html = run_html(collapse(views)[0])  # type: ignore[arg-type]
    assert "<img" not in html and "&lt;img" in html


def test_the_collapser_extends_the_open_run_and_a_commit_closes_it() -> None:
    collapser = Collapser()
    views = TimelineBuilder().extend(
        [api_read(1, 0), api_read(2, 1), commit(3, 2, "PENDING", "RUNNING", txid=9), api_read(4, 3)]
    )
    assert [collapser.add(v)[1] for v in views] == [True, False, True, True]


def live_rows(views: list, have: set[int], runs: dict[int, tuple[int, int]]) -> LiveRows:
    rows = LiveRows()
    missing = rows.seed(views, lambda v: v.id in have, have, runs)
    assert missing == []
    return rows


def test_a_live_read_turns_the_last_read_into_a_run_then_extends_it() -> None:
    # Given a page whose last row is one read
    builder = TimelineBuilder()
    rows = live_rows(
        builder.extend([commit(1, 0, "PENDING", "RUNNING", 9), api_read(2, 1)]), {1, 2}, {}
    )
    # When the same read comes: the read's row is removed and a run of two takes its place
    html = rows.place(builder.extend([api_read(3, 2)]))
    assert '<li id="event-2" hx-swap-oob="delete">' in html
    assert 'id="run-2"' in html and 'data-count="2"' in html and "fresh" in html
    # When one more comes: only the run's count and span change, and the read joins its list
    html = rows.place(builder.extend([api_read(4, 3)]))
    assert (
        'id="run-2-summary"' in html and 'hx-swap-oob="true"' in html and 'data-count="3"' in html
    )
    assert "beforeend:#run-2-events" in html and 'id="event-4"' in html
    assert 'id="run-2"' not in html.replace('id="run-2-', "")  # no second row
    # When another read comes: a row of its own
    html = rows.place(builder.extend([api_read(5, 4, "COMPLETED", xmin=10)]))
    assert 'id="event-5"' in html and 'hx-swap-oob="true"' not in html


def test_identical_reads_that_come_together_are_one_new_run_in_one_message() -> None:
    # Given a page whose last row is a commit
    builder = TimelineBuilder()
    rows = live_rows(builder.extend([commit(1, 0, "PENDING", "RUNNING", 9)]), {1}, {})
    # When three identical reads come in one batch (a catch-up, a burst)
    html = rows.place(builder.extend([api_read(2, 1), api_read(3, 2), api_read(4, 3)]))
    # Then they are one new run of three: no swap at rows the page never had
    assert 'hx-swap-oob="delete"' not in html and 'hx-swap-oob="true"' not in html
    assert html.count('data-testid="read-run"') == 1 and 'data-count="3"' in html
    assert 'id="event-2"' not in html
    # And the next one extends it: its count and its list, no row added or removed
    html = rows.place(builder.extend([api_read(5, 4)]))
    assert 'id="run-2-summary"' in html and 'data-count="4"' in html
    assert 'hx-swap-oob="delete"' not in html and "beforeend:#timeline-events" not in html


def test_a_page_s_run_that_began_before_the_reads_held_counts_the_ones_not_held() -> None:
    # Given a long page's run of 500 reads, of which the connection holds the last three
    # (and the first, by id)
    builder = TimelineBuilder()
    views = builder.extend(
        [api_read(1, 0), api_read(498, 10), api_read(499, 11), api_read(500, 12)]
    )
    rows = live_rows(views, {1}, {1: (500, 500)})
    # When one more comes, the run counts 501
    html = rows.place(builder.extend([api_read(501, 13)]))
    assert 'data-count="501"' in html


def test_a_read_that_arrives_after_the_commit_that_followed_it_still_joins_its_run() -> None:
    # Given a page: two reads, then a commit (the reads' events came through RabbitMQ)
    builder = TimelineBuilder()
    views = builder.extend(
        [api_read(1, 0), api_read(2, 10), commit(3, 30, "RUNNING", "COMPLETED", 8)]
    )
    rows = live_rows(views, {1, 3}, {1: (2, 2)})
    # When a third read of before the commit arrives after it
    html = rows.place(builder.extend([api_read(4, 20)]))
    # Then it joins the run, as the page rendered later shows it
    assert 'id="run-1-summary"' in html and 'data-count="3"' in html
    # and a read after the commit starts a row of its own
    html = rows.place(builder.extend([api_read(6, 40)]))
    assert 'id="event-6"' in html and "beforeend:#timeline-events" in html


def test_a_page_s_folded_run_is_extended_from_its_own_count() -> None:
    # Given a page showing reads 1-3 as one run (from its hello: first 1, count 3, last 3)
    builder = TimelineBuilder()
    views = builder.extend([api_read(1, 0), api_read(2, 1), api_read(3, 2)])
    rows = live_rows(views, {1}, {1: (3, 3)})
    # When a fourth comes, the run counts four and nothing is sent twice
    html = rows.place(builder.extend([api_read(4, 3)]))
    assert 'data-count="4"' in html and re.findall(r'id="event-(\d+)"', html) == ["4"]


def test_a_read_of_a_run_that_becomes_proof_splits_the_run_live() -> None:
    # Given a page showing five reads as one run
    builder = TimelineBuilder()
    views = builder.extend([api_read(i, i) for i in range(1, 6)])
    rows = live_rows(views, {1}, {1: (5, 5)})
    # When the third becomes proof of a finding
    changed = pin(views, [Finding("stale_read", (3,), "old")])
    html = rows.remark(v for v in views if v.id in changed)
    # Then the run gives way to: a run of two (the page's row, re-rendered in place), the
    # read alone with its mark, a run of two
    first, added = html.split('<div hx-swap-oob="beforeend:#timeline-events">')
    assert first.startswith('<li class="ev lane-api run" id="run-1"') and 'data-count="2"' in first
    assert "hx-swap-oob" not in first
    assert re.findall(r'<li class="ev fresh [^"]*" id="([^"]+)"', added) == ["event-3", "run-4"]
    assert "has-finding" in added
    # And the next identical read extends the last piece
    html = rows.place(builder.extend([api_read(6, 6)]))
    assert 'id="run-4-summary"' in html and 'data-count="3"' in html


def columns(*counts: int) -> list[Column]:
    return [Column(i, {"api": n} if n else {}) for i, n in enumerate(counts)]


def test_windows_are_whole_columns_of_at_least_a_window_of_events_and_cover_all_time() -> None:
    half = WINDOW // 2
    found = windows_of(columns(half, half, 0, 0, WINDOW * 3, 1, 0, 2), 0, 1000.0)
    assert [w.count for w in found] == [WINDOW, WINDOW * 3, 3]
    # Each starts where the last ended (an event that arrives late falls in one), the
    # first from the start and the last to the end
    assert found[0].after is None and found[-1].before is None
    assert found[1].after == found[0].before == (2000, 0)
    assert found[2].after == found[1].before == (5000, 0)


def test_a_cursor_is_a_time_and_an_id_and_nothing_else_parses() -> None:
    assert parse_cursor("1764590400000000.42") == (1764590400000000, 42)
    assert format_cursor((1764590400000000, 42)) == "1764590400000000.42"
    for bad in ("", "12", "a.b", "1.2.3", "1.-2", "9" * 30 + ".1", "1.2 "):
        assert parse_cursor(bad) is None


def test_a_window_not_loaded_says_what_it_holds_and_where_it_loads_from() -> None:
    html = window_html(
        "a/<b>", (1764590400000000, 5), (1764590460000000, 0), 1234, {"api": 1200, "db": 34}
    )
    assert 'data-testid="window"' in html and "1,234 more events" in html
    assert "1,200 API reads" in html and "34 commits" in html
    assert "&lt;b&gt;" not in html or "<b>" not in html
    assert (
        'data-url="/windows/a/%3Cb%3E?after=1764590400000000.5&amp;before=1764590460000000.0'
        in html
    )


class _Page(HTMLParser):
    """The timeline's rows as the browser holds them after each live message: what htmx
    swaps (by id, or out of band) and ``lifecycle.js`` moves (fresh rows to their time)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[int, int, int]] = {}  # dom id -> (time, event id, count)
        self.depth = 0
        self.top: tuple[str, dict[str, str]] | None = None
        self.row: list[object] | None = None  # the <li> being read: [dom id, time, id, count]

    def apply(self, html: str) -> None:
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self.depth == 0:
            self.top = (tag, a)
            oob = a.get("hx-swap-oob", "")
            if oob == "delete":
                self.rows.pop(a["id"], None)
            elif oob == "true" and a.get("id", "").endswith("-summary"):
                row_id = a["id"].removesuffix("-summary")
                at, first, _ = self.rows[row_id]  # a run's count changes where it is
                self.rows[row_id] = (at, first, int(a["data-count"]))
            elif tag == "li" and not oob:
                assert a["id"] in self.rows, f"{a['id']} replaced but not on the page"
                self.row = [a["id"], int(a["data-at"]), int(a["data-event-id"]), 1]
        elif self.depth == 1 and tag == "li" and self.top is not None:
            if self.top[1].get("hx-swap-oob") == "beforeend:#timeline-events":
                self.row = [a["id"], int(a["data-at"]), int(a["data-event-id"]), 1]
        elif self.row is not None and "run-summary" in a.get("class", "").split():
            self.row[3] = int(a["data-count"])
        if tag not in ("input", "br", "img"):
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        self.depth -= 1
        if self.row is not None and tag == "li" and self.depth <= 1:
            dom_id, at, first, count = self.row
            self.rows[str(dom_id)] = (int(at), int(first), int(count))  # type: ignore[call-overload]
            self.row = None

    def shown(self) -> list[tuple[int, int]]:
        return [(first, count) for _, first, count in sorted(self.rows.values())]


def _served(views: list) -> list[tuple[int, int]]:
    """The rows the page rendered now shows: (first id, count) each."""
    return [
        (r.first.id, r.count) if isinstance(r, ReadRun) else (r.id, 1)
        for r in collapse(sorted(views, key=lambda v: (v.at_us, v.id)))
    ]


def _history(rng: random.Random) -> list[EventRecord]:
    """A task's events: commits, and between them the API's and the probe's polls (which
    see the last commit's status and version), at random times."""
    records: list[EventRecord] = []
    status, xmin, ms = "PENDING", 1, 0
    for _ in range(rng.randint(1, 6)):
        for _ in range(rng.randint(0, 12)):
            ms += rng.randint(1, 40)
            i = len(records) + 1
            if rng.random() < 0.6:
                records.append(
                    api_read(i, ms, status, xmin=xmin, client=rng.choice(["web", "web", "m"]))
                )
            else:
                records.append(probe_read(i, ms, status))
        ms += rng.randint(1, 40)
        new = rng.choice(["RUNNING", "COMPLETED", "FAILED"])
        records.append(commit(len(records) + 1, ms, status, new, txid=xmin + 1))
        status, xmin = new, xmin + 1
    return records


@pytest.mark.parametrize("seed", range(300))
def test_a_live_page_folds_its_reads_as_the_page_served_now_whatever_the_arrival_order(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows are cached by event id, which is unique in a database, not across these tests
    monkeypatch.setattr(fragments, "_rows", {})
    rng = random.Random(seed)
    records = _history(rng)
    # Each source's events reach the inspector late by its own delays: the API's reads
    # through RabbitMQ, the commits through the follower. Ids are given at arrival.
    delay = {s: rng.randint(0, 150) for s in ("api", "probe", "db")}
    arrival = [
        dataclasses.replace(r, id=n)
        for n, r in enumerate(
            sorted(
                records,
                key=lambda r: r.at + timedelta(milliseconds=delay[r.source] + rng.randint(0, 30)),
            ),
            start=1,
        )
    ]
    # Given a page served when some had arrived, then a connection that says what it shows
    builder = TimelineBuilder()
    served_at = rng.randint(0, len(arrival))
    page_views = builder.extend(sorted(arrival[:served_at], key=lambda r: (r.at, r.id)))
    page = _Page()
    page.apply(rows_fragment([row_html(r) for r in collapse(page_views)]))
    live = LiveRows()
    have = {first for first, _ in page.shown()}
    runs = {}
    for row in collapse(page_views):
        if isinstance(row, ReadRun) and row.count > 1:
            runs[row.first.id] = (row.count, row.last.id)
    missing = live.seed(page_views, lambda v: v.id in have, have, runs)
    assert missing == []
    views = list(page_views)
    # When the rest arrive, in batches of arrival order
    rest = arrival[served_at:]
    while rest:
        n = rng.randint(1, 4)
        batch, rest = rest[:n], rest[n:]
        fresh = builder.extend(batch)
        views.extend(fresh)
        page.apply(live.place(fresh))
        # Then after each message the page shows what a page served now would show
        assert page.shown() == _served(views), f"after {[r.id for r in batch]}"
    # And when a read proves a finding, it stands alone; when it no longer does, it folds
    reads = [v for v in views if v.record.kind == "read"]
    if reads:
        proof = rng.choice(reads)
        changed = pin(views, [Finding("stale_read", (proof.id,), "old")])
        page.apply(live.remark(v for v in views if v.id in changed))
        assert page.shown() == _served(views)
        changed = pin(views, [])
        page.apply(live.remark(v for v in views if v.id in changed))
        assert page.shown() == _served(views)
