"""What the follower last found wrong with a watched database's capture (a watched table
whose key or status column a migration dropped), shown on the dashboard with the command
that mends it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0017_commit_versions")]

    operations = [
        migrations.AddField(
            model_name="watcheddatabase",
            name="problem",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddField(
            model_name="watcheddatabase",
            name="checked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
