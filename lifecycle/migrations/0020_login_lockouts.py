"""Failed logins and the lockouts they cause (lifecycle.people.logins): two small tables, kept to
the last LIFECYCLE_LOGIN_WINDOW as new failures come."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("lifecycle", "0019_status_columns_hold_any_status"),
    ]

    operations = [
        migrations.CreateModel(
            name="LoginFailure",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("username", models.CharField(max_length=150)),
                ("address", models.CharField(blank=True, max_length=64)),
                ("at", models.DateTimeField()),
            ],
            options={
                "db_table": "lifecycle_login_failure",
                "indexes": [
                    models.Index(fields=["username", "at"], name="lifecycle_l_usernam_6491a0_idx"),
                    models.Index(fields=["address", "at"], name="lifecycle_l_address_a88485_idx"),
                    models.Index(fields=["at"], name="lifecycle_l_at_e9d037_idx"),
                ],
            },
        ),
        migrations.CreateModel(
            name="LoginLockout",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "scope",
                    models.CharField(
                        choices=[("username", "Username"), ("address", "Address")], max_length=8
                    ),
                ),
                ("key", models.CharField(max_length=150)),
                ("failures", models.PositiveIntegerField()),
                ("since", models.DateTimeField()),
                ("until", models.DateTimeField()),
            ],
            options={
                "verbose_name": "login lockout",
                "db_table": "lifecycle_login_lockout",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("scope", "key"), name="lifecycle_login_lockout_once"
                    )
                ],
            },
        ),
    ]
