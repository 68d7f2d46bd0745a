"""The live feed's position (``FeedState``): which ids were delivered, which are gaps, and
when a gap is provably dead. Pure bookkeeping, tested without a server."""

from __future__ import annotations

import pytest

from lifecycle.feed.listener import FeedState

pytestmark = pytest.mark.unit


def test_state_keeps_a_gap_until_a_late_commit_delivers_it_once() -> None:
    # Given 10 is missing when 11 shows up
    state = FeedState(9, grace=1.0)
    assert state.observe([11], now=0.0) == [11]
    assert list(state.gaps) == [10] and not state.needs_bound(0.5)
    # When the grace period has passed, the next fetch takes a bound
    assert state.needs_bound(1.0)
    state.settle(xmin=100, bound=120, asked_at=1.0)
    assert state.gaps[10].bound == 120 and not state.needs_bound(2.0)
    # Then the gap lives while a transaction up to the bound may hold the id
    state.settle(xmin=120, bound=None, asked_at=2.0)
    assert 10 in state.gaps
    # And a late commit is delivered once
    assert state.observe([10, 12], now=2.1) == [10, 12]
    assert state.gaps == {} and state.high == 12
    assert state.observe([12], now=2.2) == []


def test_state_gives_up_a_gap_once_every_transaction_that_could_hold_it_ended() -> None:
    state = FeedState(0, grace=1.0)
    state.observe([2], now=0.0)
    state.settle(xmin=50, bound=None, asked_at=0.5)  # within the grace
    state.settle(xmin=50, bound=60, asked_at=1.0)
    state.settle(xmin=60, bound=None, asked_at=1.1)  # the bound's own transaction may run
    assert 1 in state.gaps
    state.settle(xmin=61, bound=None, asked_at=1.2)
    assert state.gaps == {} and state.expired == 1


def test_state_bounds_only_the_gaps_older_than_the_grace() -> None:
    state = FeedState(0, grace=1.0)
    state.observe([2], now=0.0)
    state.observe([4], now=0.8)
    state.settle(xmin=50, bound=60, asked_at=1.0)
    assert state.gaps[1].bound == 60 and state.gaps[3].bound is None


def test_state_caps_the_gaps_and_gives_up_the_oldest() -> None:
    state = FeedState(0, max_gaps=3)
    state.observe([5, 10], now=0.0)
    assert list(state.gaps) == [7, 8, 9] and state.dropped == 5
    state.observe([1_000_000], now=0.0)
    assert list(state.gaps) == [999_997, 999_998, 999_999]
