"""The DOM ids that the page templates and the live fragments share.

A fragment pushed over a websocket lands where the page put an element with the same id;
both sides take the id from here (templates through ``{% dom "name" %}``), so they cannot
drift apart. ``static/lifecycle.js`` reads the ids it needs from ``<body>``'s data
attributes, which ``base.html`` fills from here.
"""

from __future__ import annotations

TIMELINE_EVENTS = "timeline-events"  # the <ol> of a timeline's events
TIMELINE_EMPTY = "timeline-empty"  # "No event yet."
TASK_ROWS = "task-rows"  # the home page's list of tasks
NO_TASKS = "no-tasks"  # "No task yet."
TASK_HEADER = "task-header"
VERDICT = "verdict"
FINDINGS = "findings"
EVENT_PREFIX = "event-"  # + the event's id
RUN_PREFIX = "run-"  # + its first event's id: a folded run of identical reads
WINDOW_PREFIX = "window-"  # + its index: a window of a long timeline, not loaded yet
TASK_ROW_PREFIX = "task-"  # + the task's key

IDS = {
    "event_prefix": EVENT_PREFIX,
    "run_prefix": RUN_PREFIX,
    "window_prefix": WINDOW_PREFIX,
    "timeline_events": TIMELINE_EVENTS,
    "timeline_empty": TIMELINE_EMPTY,
    "task_rows": TASK_ROWS,
    "no_tasks": NO_TASKS,
    "task_header": TASK_HEADER,
    "verdict": VERDICT,
    "findings": FINDINGS,
}


def event_id(event: int) -> str:
    """The id of one event's row on a timeline (and the ``#event-N`` of a permalink)."""
    return f"{EVENT_PREFIX}{event}"


def task_row_id(task_key: str) -> str:
    """The id of a task's row on the home page. Not escaped: the caller escapes it."""
    return f"{TASK_ROW_PREFIX}{task_key}"
