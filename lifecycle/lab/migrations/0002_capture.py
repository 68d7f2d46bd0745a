"""Watch the lab's task table with the generic capture trigger."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("lab", "0001_initial"), ("lifecycle", "0002_capture_trigger")]

    operations = [
        migrations.RunSQL(
            "CREATE TRIGGER lifecycle_capture AFTER INSERT OR UPDATE OR DELETE ON lab_task "
            "FOR EACH ROW EXECUTE FUNCTION lifecycle_capture('id', 'status');",
            "DROP TRIGGER IF EXISTS lifecycle_capture ON lab_task;",
        )
    ]
