"""The generic capture trigger function and the NOTIFY on the event table.

Its SQL is the frozen file ``migrations/sql/0002_capture_trigger.sql``: later changes go
into new migrations, because this one must keep producing the same schema on a fresh
database.
"""

from pathlib import Path

from django.db import migrations

from lifecycle import sql

SQL = sql.migration(Path(__file__).resolve().parent.parent, "0002_capture_trigger")
CAPTURE_FUNCTION = SQL["capture_function"]
NOTIFY_FUNCTION = SQL["notify_function"]


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0001_initial")]

    operations = [
        migrations.RunSQL(CAPTURE_FUNCTION, SQL["capture_function_reverse"]),
        migrations.RunSQL(NOTIFY_FUNCTION, SQL["notify_function_reverse"]),
    ]
