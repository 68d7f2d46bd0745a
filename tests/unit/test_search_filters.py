"""The home page's search filters, parsed from a query string (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lifecycle.check.search import Filters

pytestmark = pytest.mark.unit


def test_every_filter_is_read_and_kept_for_the_next_page() -> None:
    query = {
        "status": "FAILED",
        "scenario": "cached-read",
        "verdict": "fail",
        "findings": "stale_read",
        "since": "2026-12-02T09:00",
        "until": "2026-12-02T18:30",
        "prefix": " job-7 ",
    }
    filters, errors = Filters.parse(query)

    assert errors == []
    assert filters.since == datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # the page's times are UTC
    assert filters.prefix == "job-7"
    assert filters.active
    assert filters.query() == {**query, "prefix": "job-7"}


def test_no_filter_is_not_a_search() -> None:
    filters, errors = Filters.parse({"page": "2"})
    assert not filters.active and errors == []


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"verdict": "maybe"}, "verdict must be one of pass, fail, running, none"),
        ({"findings": "bogus"}, "findings must be any or one of the checker's kinds"),
        ({"since": "yesterday"}, "since 'yesterday' is not a date or time"),
        ({"since": "2026-12-03", "until": "2026-12-02"}, "since is after until"),
        ({"prefix": "k" * 201}, "prefix is longer than 200 characters"),
    ],
)
def test_a_bad_filter_is_named_and_the_others_still_apply(query: dict, error: str) -> None:
    filters, errors = Filters.parse({**query, "status": "FAILED"})
    assert any(error in e for e in errors), errors
    assert filters.status == "FAILED"
