"""The commits of a row version: a read's ``xmin`` is the 32-bit part of its writer's
transaction id, and a long page's window or connection asks for the commits of the
versions its reads returned (``outline.commits_of_versions``) without reading the
history."""

from django.db import migrations

INDEX = (
    "CREATE INDEX IF NOT EXISTS lifecycle_event_task_version "
    "ON lifecycle_event (task_key, (txid % 4294967296)) WHERE source = 'db'"
)


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0016_task_time_order")]

    operations = [
        migrations.RunSQL(INDEX, "DROP INDEX IF EXISTS lifecycle_event_task_version"),
    ]
