"""A run's expected and observed status, and a check's expected one, hold any status an
event may carry (64 characters, lifecycles.MAX_STATUS): a 33-character expectation made the
maintainer fail on every pass. Widening a varchar rewrites nothing."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("lifecycle", "0018_watched_database_problem"),
    ]

    operations = [
        migrations.AlterField(
            model_name="run",
            name="expected",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="run",
            name="observed",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AlterField(
            model_name="taskcheck",
            name="expected",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
    ]
