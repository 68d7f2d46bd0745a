"""Each run keeps the JSON body it submitted (scenarios are files now, and a run may carry an
edited body). Runs from before were all lab runs: they get the body their scenario sent
then, frozen here, so that resubmitting one sends the same task again."""

from django.db import migrations, models

# The lab's bodies when runs did not record theirs (lifecycle/lab/scenarios.toml since).
LAB_BODIES = {
    "succeeds": {"config": {"input": [1, 2, 3]}},
    "fails": {"config": {"input": [1, "two", 3]}},
    "slow": {"config": {"input": [1, 2, 3], "sleep": 2}},
    "retry-then-succeeds": {"config": {"input": [1, 2, 3], "fail_times": 2}},
    "swallowed-error": {"config": {"input": [1, "two", 3], "swallowed_error": True}},
    "missing-commit": {"config": {"input": [1, 2, 3], "missing_commit": True}},
    "overwrite-after-failure": {
        "config": {"input": [1, "two", 3], "overwrite_after_failure": True}
    },
    "cached-read": {"config": {"input": [1, 2, 3], "sleep": 1, "cached_read": True}},
    "snapshot-read": {"config": {"input": [1, 2, 3], "sleep": 1, "snapshot_read": True}},
    "enqueue-before-commit": {"config": {"input": [1, 2, 3], "enqueue_before_commit": True}},
    "redelivery": {"config": {"input": [1, 2, 3], "redelivery": True}},
}


def fill_bodies(apps, schema_editor):
    Run = apps.get_model("lifecycle", "Run")
    for name, body in LAB_BODIES.items():
        Run.objects.filter(scenario=name, body__isnull=True).update(body=body)


class Migration(migrations.Migration):
    dependencies = [
        ("lifecycle", "0007_watched_database"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="body",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.RunPython(fill_bodies, migrations.RunPython.noop),
    ]
