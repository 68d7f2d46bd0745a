import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("clientjobs", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Delivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("status", models.CharField(default="PENDING", max_length=16)),
            ],
        ),
        migrations.CreateModel(
            name="EmailDelivery",
            fields=[
                (
                    "delivery_ptr",
                    models.OneToOneField(
                        auto_created=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        parent_link=True,
                        primary_key=True,
                        serialize=False,
                        to="clientjobs.delivery",
                    ),
                ),
                ("address", models.TextField()),
            ],
            bases=("clientjobs.delivery",),
        ),
    ]
