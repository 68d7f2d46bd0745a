"""A job: submitted by the API (PENDING), run by the worker (RUNNING), then COMPLETED or
FAILED. Its payload says what to do; its output is what the work produced.

The table once had a ``notes`` column (0001), renamed ``remarks`` (0003), then dropped
(0004); ``priority`` (0002) is there ahead of the release that reads it. Every one of these
migrations can run while the processes of this code serve.
"""

from __future__ import annotations

from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING"
        RUNNING = "RUNNING"
        COMPLETED = "COMPLETED"
        FAILED = "FAILED"

    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    payload = models.JSONField(default=dict, blank=True)
    output = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "status": self.status,
            "payload": self.payload,
            "output": self.output,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
