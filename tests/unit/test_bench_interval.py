"""The interval ``bench.worker_overhead`` prints around a median of noisy rounds: pure logic."""

from __future__ import annotations

import statistics

import pytest

from bench.worker_overhead import median_interval

pytestmark = pytest.mark.unit


def test_the_interval_holds_the_median_and_is_the_same_for_the_same_rounds():
    rounds = [0.0, -0.07, -0.01, 0.06, 0.09, 0.10, 0.17, 0.26, 0.43, -0.08, 0.14, 0.19]
    low, high = median_interval(rounds)
    assert low <= statistics.median(rounds) <= high
    assert (low, high) == median_interval(rounds)  # seeded: a report can be checked


def test_rounds_that_agree_give_a_narrow_interval_and_rounds_that_do_not_a_wide_one():
    steady = median_interval([0.04, 0.05, 0.05, 0.06, 0.05, 0.04, 0.06, 0.05])
    noisy = median_interval([-0.10, 0.40, 0.02, 0.30, -0.05, 0.25, 0.10, 0.45])
    assert steady[1] - steady[0] <= 0.02
    assert noisy[1] - noisy[0] >= 0.2
    assert median_interval([0.07]) == (0.07, 0.07)
