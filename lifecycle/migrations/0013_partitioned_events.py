"""The event table, partitioned by week of ``at``, so that pruning drops whole weeks.

``lifecycle_event`` becomes ``PARTITION BY RANGE (at)``: a partition an ISO week (Monday
00:00 UTC to the next Monday), named ``lifecycle_event_wYYYYMMDD`` after its Monday, and
``lifecycle_event_default`` for any row no partition covers (a client's clock can say
anything). The migration creates this week's and the next 2 weeks' partitions and one for
each week of the last 400 days that holds events, then copies the rows;
``lifecycle.store.retention`` keeps creating them ahead and drops the old ones. A week, not a day:
reads that name no time look into every partition, and a year is 53 weeks but 366 days.

PostgreSQL wants the partition key in every unique constraint: the primary key becomes
(id, at) and the uuid's unique constraint (uuid, at), with their names, and every
``ON CONFLICT (uuid)`` of the engine's SQL became ``ON CONFLICT (uuid, at)``. A redelivered
event carries its producer's ``at``, so it still finds its first copy. The id sequence keeps
its name, its value and its grants; the indexes, the notify trigger and the table's grants
(0010's capture role) are those of before. Django's state is unchanged: to the ORM the
primary key is still ``id`` and the uuid still unique.

The copy holds the table locked (``ACCESS EXCLUSIVE``): captured writers wait for it, so on
a large table run it when writes can wait. Reversible: the reverse copies the rows back
into one plain table (and fails if two events share a uuid at two different times).
"""

from pathlib import Path

from django.db import migrations

from lifecycle import sql

SQL = sql.migration(Path(__file__).resolve().parent.parent, "0013_partitioned_events")


def _fill(text: str, aside: str, key: str, uuid: str) -> str:
    return text.replace("{aside}", aside).replace("{key}", key).replace("{uuid}", uuid)


PARTITION = _fill(
    "\n".join([SQL["set_aside"], SQL["create_partitioned"], SQL["fill"]]),
    "lifecycle_event_unpartitioned",
    "id, at",
    "uuid, at",
)
UNPARTITION = _fill(
    "\n".join([SQL["set_aside"], SQL["create_plain"], SQL["fill"]]),
    "lifecycle_event_partitioned",
    "id",
    "uuid",
)


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0012_run_follower")]

    operations = [migrations.RunSQL(PARTITION, UNPARTITION)]
