"""Watch the lab's task table with the generic capture trigger (frozen SQL in sql/)."""

from pathlib import Path

from django.db import migrations

from lifecycle import sql

SQL = sql.migration(Path(__file__).resolve().parent.parent, "0002_capture")


class Migration(migrations.Migration):
    dependencies = [("lab", "0001_initial"), ("lifecycle", "0002_capture_trigger")]

    operations = [migrations.RunSQL(SQL["install"], SQL["remove"])]
