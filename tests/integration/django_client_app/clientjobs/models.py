from __future__ import annotations

from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING"
        RUNNING = "RUNNING"
        DONE = "DONE"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    payload = models.JSONField(default=dict)
    parent = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="+")


class Delivery(models.Model):
    """A parent table that holds the status, and a child that inherits it (multi-table
    inheritance): the version read is the parent row's, where the status lives."""

    status = models.CharField(max_length=16, default="PENDING")


class EmailDelivery(Delivery):
    address = models.TextField()
