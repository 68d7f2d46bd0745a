"""The capture function cannot be diverted, and runs with the right to insert events only.

``lifecycle_capture()`` is ``SECURITY DEFINER``; 0005 pinned its search_path ``FROM
CURRENT``, a path that PostgreSQL still searches ``pg_temp`` first on. A writer's temp table
named ``lifecycle_event`` would then have caught its events (or suppressed them). Now it
sets ``search_path = pg_catalog, pg_temp`` and names the event table and the body type by
their schema, the one the migration runs in: no name of ours is looked up in ``pg_temp``.
``CREATE OR REPLACE`` keeps the function, so installed triggers use it at once.

Run as a superuser (as ``make run`` is here), it also gives the function to a role of its
own, ``<database>_lifecycle_capture``: no login, ``INSERT`` on the event table, nothing else,
so the code every writer runs with the owner's rights can do no more than write an event.
Run as another user, the function stays that user's, and the migration says so.
"""

from pathlib import Path

from django.db import migrations

from lifecycle import sql

APP = Path(__file__).resolve().parent.parent
SQL = sql.migration(APP, "0010_pinned_capture")
SQL_0005 = sql.migration(APP, "0005_cheaper_capture")


def _names(schema_editor) -> dict[str, str]:
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT current_schema(), current_database(), rolsuper FROM pg_roles"
            " WHERE rolname = current_user"
        )
        schema, database, superuser = cur.fetchone()
    role = f"{database}_lifecycle_capture"[:63]
    quote = schema_editor.connection.ops.quote_name
    return {
        "{schema}": quote(schema),
        "{role}": quote(role),
        "{role_literal}": "'" + role.replace("'", "''") + "'",
        "superuser": superuser,
        "role": role,
    }


def _fill(text: str, names: dict[str, str]) -> str:
    for placeholder in ("{schema}", "{role_literal}", "{role}"):
        text = text.replace(placeholder, names[placeholder])
    return text


def pin(apps, schema_editor) -> None:
    names = _names(schema_editor)
    schema_editor.execute(_fill(SQL["capture_function"], names))
    if names["superuser"]:
        schema_editor.execute(_fill(SQL["owner_role"], names))
    else:
        print(
            f"\n  lifecycle_capture() stays owned by the migrating user: run this migration"
            f" as a superuser to give it to the role {names['role']}, which may only insert"
            " events."
        )


def unpin(apps, schema_editor) -> None:
    names = _names(schema_editor)
    schema_editor.execute(_fill(SQL["owner_role_reverse"], names))
    schema_editor.execute(SQL_0005["capture_function"])


class Migration(migrations.Migration):
    dependencies = [("lifecycle", "0009_event_expect_index")]

    operations = [migrations.RunPython(pin, unpin)]
