"""The one way to get a libpq connection string for Django's database, outside the ORM.

It reads ``connections["default"].settings_dict`` at call time, not ``settings.DATABASES``,
because test runners switch NAME to the test database at runtime.
"""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo

# Django's OPTIONS that are not libpq connection parameters.
DJANGO_ONLY_OPTIONS = {
    "isolation_level",
    "server_side_binding",
    "assume_role",
    "pool",
    "cursor_factory",
}


def conninfo(*, application_name: str | None = None, dbname: str | None = None) -> str:
    """Django's default database as a conninfo; ``application_name`` (what the capture
    trigger records as the writer) and ``dbname`` replace the settings' when given."""
    from django.db import connections

    db = connections["default"].settings_dict
    params: dict[str, Any] = {
        key: str(value)
        for key, value in (db.get("OPTIONS") or {}).items()
        if key not in DJANGO_ONLY_OPTIONS and isinstance(value, str | int)
    }
    params.update(
        dbname=dbname or db.get("NAME"),
        user=db.get("USER"),
        password=db.get("PASSWORD"),
        host=db.get("HOST"),
        port=db.get("PORT"),
    )
    if application_name:
        params["application_name"] = application_name
    return make_conninfo(**{key: value for key, value in params.items() if value})
