"""The home page's list when a few long histories fill the event table: the tasks older than
the newest events come from the maintainer's checks once it has checked them (the window
widens until then), and a long history is not counted again on every page. Against the
real database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lifecycle.check import findings
from lifecycle.models import CheckCursor, Event
from lifecycle.store import eventlog

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def add(task: str, n: int, status: str = "RUNNING") -> None:
    Event.objects.bulk_create(
        Event(task_key=task, source="api", kind="read", status=status, body={"i": i})
        for i in range(n)
    )


def newest() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


@pytest.fixture
def three(postgres: None) -> dict[str, str]:
    """Three long histories, oldest first: only the last two are in the newest 2,000."""
    Event.objects.all().delete()
    keys = {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("old", "middle", "new")}
    add(keys["old"], 1500)
    add(keys["middle"], 1500)
    add(keys["new"], 600)
    return keys


def checked() -> None:
    """The maintainer's pass: every task checked, its cursor at the newest event."""
    findings.changed_tasks()  # the first pass makes the cursor's row
    findings.refresh()
    findings.passed(newest())


def test_tasks_older_than_the_newest_events_come_from_the_checks(
    three: dict[str, str], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked()
    monkeypatch.setattr(eventlog, "EXACT_COUNT_MAX", 1000)  # these histories count as long
    # When the home page lists them
    with CaptureQueriesContext(connection) as queries:
        recent, more = eventlog.recent_tasks()
    # Then all three, newest first, with their counts, and no wider window was read
    assert [(s.task_key, s.events) for s in recent] == [
        (three["new"], 600),
        (three["middle"], 1500),
        (three["old"], 1500),
    ]
    assert not more
    windows = [q["sql"] for q in queries if "ORDER BY id DESC LIMIT" in q["sql"]]
    assert len(windows) == 1
    # And a long history's events after its check are counted on top of it
    add(three["old"], 3, "COMPLETED")
    recent, _ = eventlog.recent_tasks()
    assert recent[0].task_key == three["old"] and recent[0].events == 1503
    assert recent[0].status == "COMPLETED"


def test_until_the_maintainer_has_checked_them_the_window_widens(
    three: dict[str, str],
) -> None:
    # Given a maintainer that has not passed yet
    CheckCursor.objects.update_or_create(pk=1, defaults={"checked_through": 0})
    recent, _ = eventlog.recent_tasks()
    # Then the list is still whole and exact, read from the events alone
    assert [(s.task_key, s.events) for s in recent] == [
        (three["new"], 600),
        (three["middle"], 1500),
        (three["old"], 1500),
    ]


def test_a_task_pruned_since_its_check_is_not_listed(three: dict[str, str]) -> None:
    checked()
    Event.objects.filter(task_key=three["old"]).delete()  # as retention would
    recent, _ = eventlog.recent_tasks()
    assert [s.task_key for s in recent] == [three["new"], three["middle"]]
