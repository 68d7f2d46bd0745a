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


def _run(round_: int, middleware: bool, drain: float, control: bool = False) -> dict:
    return {
        "round": round_,
        "count": 1000,
        "middleware": middleware,
        "control": control,
        "drain": drain,
        "events": 0 if not middleware or control else 3000,
        "kinds": {"enqueue": 1000, "start": 1000, "ack": 1000, "gap": 0},
        "gap_dropped": 0,
        "cpu": 0.3,
        "cpu_closed": 0.3,
        "rabbitmq_cpu": None,
        "relay_cpu": None,
        "threads": {},
        "enqueue_rate": 5000.0,
    }


def test_the_control_rounds_are_summarized_apart_from_the_middleware_s():
    from bench.worker_overhead import _summarize, format_overhead

    runs = []
    for r, (without, with_, control) in enumerate([(1.0, 1.2, 1.02), (1.0, 1.1, 0.98)], 1):
        runs += [_run(r, False, without), _run(r, True, with_), _run(r, True, control, True)]
    s = _summarize(runs, (1000,))[1000]
    assert s["slowdowns"] == pytest.approx([0.2, 0.1])  # the control is no middleware round
    assert s["controls"] == pytest.approx([0.02, -0.02])
    assert s["control"] == pytest.approx(0.0)
    assert s["events"] == 3000 and s["stray"] == 0  # a control's events are not counted
    text = format_overhead({"rounds": 2, "by_size": {1000: s}})
    assert "control, the same rounds with a middleware that does nothing" in text
    assert text.index("control") < text.index("every event reaches RabbitMQ")
    runs[2]["events"] = 5  # a control drain whose worker published: the run is wrong
    assert _summarize(runs, (1000,))[1000]["stray"] == 5


def test_shadow_and_other_variants_are_summarized_apart_from_the_middleware_s():
    from bench.worker_overhead import _summarize, format_overhead

    runs = []
    for r, (without, with_, shadow, minimal) in enumerate(
        [(1.0, 1.2, 1.01, 1.05), (1.0, 1.1, 0.97, 1.03)], 1
    ):
        shadowed = _run(r, False, shadow)
        shadowed.update(shadow=True, shadow_cpu=0.1, events=2000)  # the shadow's own events
        also = _run(r, True, minimal)
        also.update(also="minimal", events=0)
        runs += [_run(r, False, without), _run(r, True, with_), shadowed, also]
    s = _summarize(runs, (1000,))[1000]
    # The middleware's rounds are its own; the shadow's and the variant's are apart
    assert s["slowdowns"] == pytest.approx([0.2, 0.1])
    assert s["shadows"] == pytest.approx([0.01, -0.03])
    assert s["also"]["minimal"]["slowdowns"] == pytest.approx([0.05, 0.03])
    # and a shadow's events (sent by another process) are not stray events of a plain drain
    assert s["stray"] == 0 and s["events"] == 3000
    text = format_overhead({"rounds": 2, "by_size": {1000: s}})
    assert "shadow, the same rounds without the middleware" in text
    assert "its events 2,000, 2,000 of 2,000 each" in text
    assert "variant minimal, the same rounds: +4.0% (rounds +5%, +3%" in text


def test_valgrinds_counts_are_summed_over_the_processes_it_logged(tmp_path):
    from bench.worker_overhead import instructions_counted

    (tmp_path / "101").write_text("==101== Cachegrind\n==101== I   refs:      1,234,567\n")
    (tmp_path / "102").write_text("==102== I   refs:      10\n")
    assert instructions_counted(tmp_path) == 1_234_577
    (tmp_path / "101").write_text("==101== killed\n")
    (tmp_path / "102").write_text("")
    with pytest.raises(RuntimeError):
        instructions_counted(tmp_path)
