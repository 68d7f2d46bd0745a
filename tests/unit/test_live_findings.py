"""How a live timeline's findings are paced: the check budget, the refresh grid, and the
refresher that keeps them current. asyncio only, no server."""

from __future__ import annotations

import asyncio

import pytest

from lifecycle.check.live import CheckBudget, FindingsRefresher, RefreshGrid
from lifecycle.check.rules import Finding
from lifecycle.events import EventRecord

pytestmark = pytest.mark.unit


def records(n: int) -> list[EventRecord]:
    return [EventRecord(i, "probe", "read", "t") for i in range(1, n + 1)]


def test_the_grid_waits_for_its_next_point_after_a_refresh() -> None:
    # Given a task's grid of 0.2 s
    grid = RefreshGrid("task-a", interval=0.2)
    assert 0 <= grid.phase < 0.2
    # When nothing was refreshed yet, a refresh may start at once
    assert grid.wait(10.0) == 0
    # When a refresh ends, the next may start only at the next point of the grid
    grid.refreshed(10.0)
    wait = grid.wait(10.0)
    assert 0 < wait <= 0.2
    assert ((10.0 + wait - grid.phase) / 0.2) == pytest.approx(
        round((10.0 + wait - grid.phase) / 0.2)
    )


def test_connections_to_one_task_share_a_phase_and_tasks_spread_over_the_grid() -> None:
    assert RefreshGrid("same").phase == RefreshGrid("same").phase
    phases = {round(RefreshGrid(f"task-{i}").phase, 4) for i in range(50)}
    assert len(phases) > 25


async def test_the_budget_holds_checks_to_their_share_of_the_time() -> None:
    # Given a budget of 10 % and a check that takes 20 ms
    budget = CheckBudget(share=0.1, burst=0.0)
    loop = asyncio.get_running_loop()

    async def slow(batch: list[EventRecord]) -> list[Finding]:
        await asyncio.sleep(0.02)
        return []

    # When three checks are asked for at once
    start = loop.time()
    await asyncio.gather(*(budget.run(slow, records(1), loop) for _ in range(3)))
    elapsed = loop.time() - start
    # Then they ran one at a time and waited for the budget: 60 ms of checks need ~0.4 s
    # of waiting at 10 % (the first one is free).
    assert elapsed >= 0.35


async def test_a_burst_of_events_costs_one_check_and_the_answer_is_published() -> None:
    # Given a refresher over a history that grows
    history = records(3)
    checked: list[int] = []
    published: list[tuple[int, int]] = []

    async def check(batch: list[EventRecord]) -> list[Finding]:
        checked.append(len(batch))
        return [Finding("stuck", (batch[-1].id,), "m")]

    async def publish(found: list[Finding], generation: int) -> None:
        published.append((found[0].events[0], generation))

    refresher = FindingsRefresher(
        "t", lambda: history, check, publish, interval=0.05, budget=CheckBudget(1.0, 1.0)
    )
    # When several batches arrive before the first check starts
    refresher.stale()
    history.append(EventRecord(4, "probe", "read", "t"))
    refresher.stale()
    refresher.stale()
    assert refresher.task is not None
    await asyncio.wait_for(refresher.task, 2)
    # Then one check saw the whole history, and its findings were published
    assert checked == [4]
    assert published == [(4, 0)]


async def test_an_answer_for_a_replaced_history_carries_its_old_generation() -> None:
    # Given a check that is slow, and a catch-up that replaces the history meanwhile
    release = asyncio.Event()
    published: list[int] = []

    async def check(batch: list[EventRecord]) -> list[Finding]:
        await release.wait()
        return []

    async def publish(found: list[Finding], generation: int) -> None:
        published.append(generation)

    refresher = FindingsRefresher(
        "t", lambda: records(2), check, publish, budget=CheckBudget(1.0, 1.0)
    )
    refresher.stale()
    await asyncio.sleep(0.01)
    refresher.replaced()
    release.set()
    assert refresher.task is not None
    await asyncio.wait_for(refresher.task, 2)
    # Then the answer says which history it was for, so the consumer can drop it
    assert published == [0] and refresher.generation == 1


async def test_a_failing_check_is_logged_and_does_not_escape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def check(batch: list[EventRecord]) -> list[Finding]:
        raise RuntimeError("checker broke")

    async def publish(found: list[Finding], generation: int) -> None:
        raise AssertionError("nothing to publish")

    refresher = FindingsRefresher("t", lambda: [], check, publish, budget=CheckBudget(1.0, 1.0))
    refresher.stale()
    assert refresher.task is not None
    await asyncio.wait_for(refresher.task, 2)
    assert "refreshing the findings of 't' failed" in caplog.text
