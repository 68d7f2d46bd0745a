"""What the lab takes at a time, so that no one's tasks starve the worker's threads.

A task's own bounds (``sleep``, ``fail_times``, ``input``) are its config's
(``lifecycle.lab.config``). Across tasks, checked when one is created, inside its
transaction:

- the sleep the worker still owes, over every attempt of every unfinished task, stays
  within ``LAB_SLEEP_BUDGET`` seconds: with the worker's threads all asleep, one of them is
  free again within about budget / threads seconds;
- one ``redelivery`` task (which kills the worker process) per ``LAB_REDELIVERY_INTERVAL``
  seconds, so the worker is not kept restarting.

Past either, the API answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from lifecycle import sql
from lifecycle.lab.config import ConfigError, task_sleep
from lifecycle.runtime.http import json_error

LIMITS = sql.read(Path(__file__).with_name("limits.sql"))

# How long an unfinished task's sleep counts: longer than any task's sleep over its
# attempts and Dramatiq's backoffs; a task that never finishes stops counting then.
IN_FLIGHT_WINDOW = 300.0


class Busy(Exception):
    """The lab takes no such task now; ``retry_after`` says when to try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))

    def response(self) -> Any:
        answer = json_error(429, str(self))
        answer["Retry-After"] = str(self.retry_after)
        return answer


def check(config: dict[str, Any]) -> None:
    """Raise Busy if the lab cannot take this task now. Call it inside the transaction that
    creates the task: it holds a lock until that transaction ends."""
    sleep = task_sleep(config)
    redelivery = bool(config.get("redelivery"))
    if not sleep and not redelivery:
        return
    with connection.cursor() as cursor:
        cursor.execute(LIMITS["lock"])
        if sleep:
            cursor.execute(LIMITS["sleep_in_flight"], [IN_FLIGHT_WINDOW])
            owed = float(cursor.fetchone()[0])
            budget = float(settings.LAB_SLEEP_BUDGET)
            if sleep > budget:
                raise ConfigError(
                    f"sleep over every attempt is {sleep:g} s; this lab's budget is {budget:g} s"
                    " (LAB_SLEEP_BUDGET)"
                )
            if owed + sleep > budget:
                raise Busy(
                    f"the worker already owes {owed:g} s of sleep to unfinished tasks; "
                    f"this task's {sleep:g} s would pass the lab's budget of {budget:g} s "
                    "(LAB_SLEEP_BUDGET)",
                    retry_after=min(owed + sleep - budget, float(config.get("sleep", 1))),
                )
        if redelivery:
            interval = float(settings.LAB_REDELIVERY_INTERVAL)
            cursor.execute(LIMITS["last_redelivery"], [interval])
            since = cursor.fetchone()[0]
            if since is not None and since < interval:
                raise Busy(
                    "a redelivery task kills the worker process: the lab takes one every "
                    f"{interval:g} s (LAB_REDELIVERY_INTERVAL)",
                    retry_after=interval - max(0.0, since),
                )
