"""How many events each token (or session user) may post to ``POST /api/events`` a minute.

``LIFECYCLE_EVENTS_PER_MINUTE`` (README: Settings) over a sliding minute: this minute's
count plus the last one's, weighted by how much of it still lies within the last 60
seconds. A request that would pass it is refused whole (nothing of it is stored) with
429 and the seconds after which it would fit. The counts live in PostgreSQL, so every
web process, on every machine, counts against the same quota; one statement checks and
counts at once, so two processes cannot both take the last room. Each holder keeps two
rows at most: a new minute's first request deletes the older ones.

Imports (``POST /api/import``, the import form) count too: a runner token whose quota
was spent imported 150,000 events a time, six at once, 500,000 a minute. An import of
more events than the whole quota counts as the quota (one such import a minute).

Events that reach the inspector through RabbitMQ (the attached applications' clients)
are not counted: they are what it observes, never to be refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

WINDOW = 60  # seconds

# Counts n events if the sliding minute then holds at most the limit: RETURNING a row
# means they were counted, no row that they were not.
_TAKE = """
WITH last AS (
    SELECT coalesce(max(events), 0) AS events FROM lifecycle_event_quota
    WHERE holder = %(holder)s AND minute = %(last)s
)
INSERT INTO lifecycle_event_quota AS q (holder, minute, events)
SELECT %(holder)s, %(minute)s, %(n)s FROM last
WHERE last.events * %(weight)s + %(n)s <= %(limit)s
ON CONFLICT (holder, minute) DO UPDATE SET events = q.events + excluded.events
WHERE q.events + excluded.events + (SELECT events FROM last) * %(weight)s <= %(limit)s
RETURNING (xmax = 0) AS first
"""

_COUNTS = """
SELECT minute, events FROM lifecycle_event_quota
WHERE holder = %(holder)s AND minute IN (%(minute)s, %(last)s)
"""


@dataclass(frozen=True)
class Refusal:
    retry_after: int  # seconds
    message: str


def limit() -> int:
    return int(settings.LIFECYCLE_EVENTS_PER_MINUTE)


def take(holder: str, n: int, now: datetime | None = None) -> Refusal | None:
    """Count ``n`` events for ``holder``: None when they fit its quota (they are counted),
    else the refusal (nothing counted)."""
    most = limit()
    if most == 0 or n <= 0:
        return None
    now = now or datetime.now(UTC)
    start = now.replace(second=0, microsecond=0)
    elapsed = (now - start).total_seconds()
    last_minute = start - timedelta(seconds=WINDOW)
    params: dict[str, Any] = {
        "holder": holder,
        "minute": start,
        "last": last_minute,
        "n": n,
        "weight": 1 - elapsed / WINDOW,
        "limit": most,
    }
    with connection.cursor() as cursor:
        cursor.execute(_TAKE, params)
        row = cursor.fetchone()
        if row is not None:
            if row[0]:  # this minute's first: the rows before the last minute go
                cursor.execute(
                    "DELETE FROM lifecycle_event_quota WHERE holder = %s AND minute < %s",
                    [holder, last_minute],
                )
            return None
        cursor.execute(_COUNTS, params)
        counts = {minute: events for minute, events in cursor.fetchall()}
    current, last = counts.get(start, 0), counts.get(last_minute, 0)
    wait = _wait(current, last, n, most, elapsed)
    return Refusal(
        wait,
        f"{holder} may post {most:,} events a minute (LIFECYCLE_EVENTS_PER_MINUTE): "
        f"{round(current + last * (1 - elapsed / WINDOW)):,} in the last minute, and "
        f"these {n:,} would pass it; nothing of this request was stored. "
        f"Send it again in {wait} s",
    )


def _wait(current: int, last: int, n: int, most: int, elapsed: float) -> int:
    """Seconds until ``n`` more fit: while this minute's count leaves room, until the last
    minute's has slid out enough; else into the next minute, until this one's has."""
    if current + n <= most:
        # last * (1 - f) + current + n <= most, f the fraction of this minute gone by
        f = 1 - (most - current - n) / last if last else 0.0
        seconds = f * WINDOW - elapsed
    else:
        f = 1 - (most - n) / current if current else 0.0
        seconds = (WINDOW - elapsed) + f * WINDOW
    return max(1, math.ceil(seconds))


def take_import(holder: str, document: object, now: datetime | None = None) -> Refusal | None:
    """Count an import's events against its holder's quota, as ``take``: an import is
    another way to store events. One of more events than the whole quota counts as the
    quota, so it needs a minute with nothing else posted: one such import a minute."""
    events = document.get("events") if isinstance(document, dict) else None
    n = len(events) if isinstance(events, list) else 0
    most = limit()
    return take(holder, min(n, most) if most else n, now)
