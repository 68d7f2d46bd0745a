"""The lab's task table: the row the worker writes and the API reads."""

from __future__ import annotations

import uuid

from django.db import models

from lifecycle import statuses


class Task(models.Model):
    # The statuses of the lab's lifecycle, as it defines them (``lifecycle.statuses.LAB``).
    Status = models.TextChoices(  # type: ignore[call-overload]  # the functional API
        "Status", [(s, (s, s.title())) for s in statuses.LAB.statuses]
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True, default="")
    output = models.JSONField(null=True, blank=True)
    executions = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "lab_task"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"

    def as_json(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "status": self.status,
            "config": self.config,
            "error": self.error,
            "output": self.output,
            "executions": self.executions,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }
