"""A small partial index of the expectations tests state (``probe.expect`` events), which
store.expected_by_task reads for the listed tasks that have no scenario run.

Built concurrently: capture triggers of the inspector's own database insert into the
event table inside the observed application's transactions, and a plain CREATE INDEX
would hold their commits for as long as it takes on a large table."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("lifecycle", "0008_run_body"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(
                condition=models.Q(("kind", "expect"), ("source", "probe")),
                fields=["task_key", "-id"],
                name="lifecycle_event_expect",
            ),
        ),
    ]
