"""The swimlane picture: lanes, attempts, commits, reads by version, findings; bounded and
escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard.swimlane import MAX_MARKS, PALETTE, swimlane
from lifecycle.checker import Finding
from lifecycle.events import EventRecord
from lifecycle.timeline import TimelineBuilder, in_time_order

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def ev(
    n: int,
    source: str,
    kind: str,
    ms: int,
    status: str | None = None,
    txid: int | None = None,
    **body: object,
) -> EventRecord:
    return EventRecord(
        id=n,
        source=source,
        kind=kind,
        task_key="t",
        status=status,
        txid=txid,
        at=T0 + timedelta(milliseconds=ms),
        body=dict(body),
    )


def picture(records: list[EventRecord], findings: list[Finding] = ()) -> str:  # type: ignore[assignment]
    views = TimelineBuilder().extend(in_time_order(records))
    return swimlane(views, findings, {"COMPLETED": "success", "FAILED": "failure"})


def test_it_draws_attempts_commits_reads_and_findings() -> None:
    svg = picture(
        [
            ev(1, "db", "insert", 0, "PENDING", txid=100, new_status="PENDING"),
            ev(2, "broker", "start", 10, message_id="m", attempt=1),
            ev(
                3,
                "db",
                "update",
                20,
                "COMPLETED",
                txid=101,
                old_status="PENDING",
                new_status="COMPLETED",
            ),
            ev(4, "broker", "ack", 30, message_id="m", attempt=1),
            ev(5, "api", "read", 40, "COMPLETED", xmin=101, snapshot="100:102:"),
            ev(6, "api", "read", 50, "PENDING", xmin=100, snapshot="100:102:"),
        ],
        [Finding("stale_read", (3, 6), "stale")],
    )

    assert svg.startswith('<svg class="swimlane"') and svg.endswith("</svg>")
    for title in ("Probe reads", "API reads", "Commits", "Broker", "Warnings"):
        assert f">{title}</text>" in svg
    assert svg.count('class="attempt attempt-ack"') == 1
    assert svg.count("<path") == 2  # the two commits
    assert ">COMPLETED</text>" in svg and 'fill="#2f855a"' in svg  # a success's colour
    # the two reads returned two versions: two colours
    assert f'fill="{PALETTE[0]}"' in svg and f'fill="{PALETTE[1]}"' in svg
    assert svg.count('class="proves"') == 2
    assert 'href="#event-6"' in svg and "<title>#6 " in svg


def test_markup_from_the_observed_system_is_escaped() -> None:
    svg = picture([ev(1, "db", "insert", 0, "<script>x</script>", txid=1)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_a_long_history_keeps_commits_and_buckets_the_reads() -> None:
    records = [ev(1, "db", "insert", 0, "PENDING", txid=1)]
    records += [ev(n, "api", "read", n, "PENDING") for n in range(2, 4 * MAX_MARKS)]
    records.append(
        ev(
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
