"""The ages ``LIFECYCLE_RETENTION`` and ``lifecycle prune --older-than`` take, the reason a
bad one is refused, and the weeks the event table's partitions are named after."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from dashboard.settings import retention_from
from lifecycle.store.retention import format_age, parse_age, partition_name, week_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_an_age_is_a_whole_number_and_a_unit(text: str, age: timedelta) -> None:
    assert parse_age(text) == age
    assert parse_age(format_age(age)) == age


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("30", "'30' is not an age: give a whole number and a unit, m (minutes), h (hours)"),
        ("30 days", "'30 days' is not an age"),
        ("1.5d", "'1.5d' is not an age"),
        ("-3d", "'-3d' is not an age"),
        ("30D", "'30D' is not an age"),
        ("", "'' is not an age"),
        ("0d", "'0d': an age must be more than zero"),
        ("99999999w", "'99999999w': an age must be at most 100 years"),
    ],
)
def test_a_bad_age_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_age(text)
    assert str(refused.value).startswith(reason)


def test_the_largest_exact_unit_names_an_age() -> None:
    assert [
        format_age(timedelta(**kw)) for kw in ({"days": 14}, {"hours": 36}, {"minutes": 90})
    ] == [
        "2w",
        "36h",
        "90m",
    ]


def test_the_setting_keeps_everything_when_empty_and_names_itself_when_bad() -> None:
    assert retention_from("") is None and retention_from("  ") is None
    assert retention_from("30d") == timedelta(days=30)
    with pytest.raises(ValueError, match=r"^LIFECYCLE_RETENTION: '30x' is not an age"):
        retention_from("30x")


@pytest.mark.parametrize(
    ("day", "monday"),
    [
        (date(2026, 11, 30), date(2026, 11, 30)),  # a Monday is its own week's
        (date(2026, 12, 2), date(2026, 11, 30)),
        (date(2026, 12, 6), date(2026, 11, 30)),  # Sunday ends it
        (date(2026, 12, 7), date(2026, 12, 7)),
        (date(2027, 1, 1), date(2026, 12, 28)),  # ISO week 53 of 2026, across the new year
        (date(2024, 3, 1), date(2024, 2, 26)),  # across a leap day
    ],
)
def test_a_day_belongs_to_the_iso_week_that_began_on_its_monday(day: date, monday: date) -> None:
    assert week_of(day) == monday and week_of(day).isoweekday() == 1
    assert day.isocalendar()[:2] == monday.isocalendar()[:2]
    assert partition_name(day) == f"lifecycle_event_w{monday:%Y%m%d}"
