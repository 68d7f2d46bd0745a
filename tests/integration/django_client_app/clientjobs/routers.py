from __future__ import annotations

from typing import Any


class ReadsRouter:
    """Reads from the "reads" alias, writes to "default"."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "reads"

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"

    def allow_relation(self, *objects: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == "default"
