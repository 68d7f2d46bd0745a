"""A cheaper capture trigger: the same events as 0002, with less work per captured row.

``lifecycle_capture()`` keeps its name and signature (``CREATE OR REPLACE`` keeps the
function's identity, so every installed trigger uses the new body at once) and its
``SECURITY DEFINER`` with a pinned ``search_path``. The events it writes are those of
0002, field for field (see the README's event schema, and the test that runs both
functions side by side); only the way they are computed changed.

Costs counted with callgrind (instructions per single-row UPDATE transaction of a
lab_task-shaped table, PostgreSQL 15, on top of the UPDATE's own ~190k): 0002 adds 472k,
this one 417k (-12%). Each SQL statement run by PL/pgSQL starts and stops an executor,
and that, with turning rows into jsonb, is most of the cost:

- An UPDATE finds its changed columns and their new values in one query (0002 ran a
  second one over the changed columns for the values): about -35k. An UPDATE that changed
  nothing is recognised by that query's empty result; comparing the whole rows first
  (``new = old``) would cost 10k more in the common case.
- An INSERT takes its column names and values in one pass too.
- The body is a row of the composite type ``lifecycle_capture_body`` turned into jsonb:
  its keys come from the type, where ``jsonb_build_object`` looked up the types of all 20
  of its arguments on every call: -16k. The type also documents the body.
- ``lifecycle_event_notify()`` notifies from an assignment, which PL/pgSQL evaluates as a
  simple expression, instead of ``PERFORM``, which runs a query: -7k.

Measured and left out:

- Sending the NOTIFY from ``lifecycle_capture()`` and giving the event table's trigger
  ``WHEN (pg_trigger_depth() < 1)``, so that captured rows skip the notify function: +9k,
  and no faster by the clock. PostgreSQL parses and plans a trigger's WHEN clause each
  time an INSERT statement starts, and each capture is an INSERT statement of its own:
  17k (34k with ``OR NEW.source <> 'db'``) plus 11k for the NOTIFY, against 19k for
  calling the notify function. The trigger keeps announcing every row, whoever inserts it.
- Dropping ``SET search_path`` (with ``SECURITY DEFINER``, which without it would let a
  caller's search_path run code as the owner) and granting INSERT on the event table to
  PUBLIC instead: -15k (``SECURITY DEFINER`` alone costs ~2k), at the price of letting
  every role write events. Kept: writers need no rights on the event table.
- Comparing the columns in a PL/pgSQL loop (by key or by position) instead of a query:
  +50k; the expressions of the loop body cost more than the query's executor.

The floor of any capture in the writer's transaction (the trigger call, an event row with
its three indexes, its NOTIFY at commit, SECURITY DEFINER) is about 175k; the rest is the
two ``to_jsonb`` of the row (70k), the query comparing them (~100k) and the body.
"""

from pathlib import Path

from django.db import migrations

from lifecycle import sql

APP = Path(__file__).resolve().parent.parent
# Unqualified names throughout: ``SET search_path FROM CURRENT`` pins the schema the
# migration runs in (and the capture benchmark creates copies in a schema of its own).
SQL = sql.migration(APP, "0005_cheaper_capture")
SQL_0002 = sql.migration(APP, "0002_capture_trigger")
BODY_TYPE = SQL["body_type"] + "\n"
CAPTURE_FUNCTION = SQL["capture_function"] + "\n"
NOTIFY_FUNCTION = SQL["notify_function"] + "\n"

# Back to 0002, word for word: its function, and its notify function and trigger.
REVERSE_CAPTURE = SQL_0002["capture_function"] + "\n" + SQL["body_type_reverse"]
REVERSE_NOTIFY = SQL["notify_trigger_reverse"] + "\n" + SQL_0002["notify_function"]


class Migration(migrations.Migration):
    # CREATE OR REPLACE keeps the function that lab.0002_capture's trigger points at, so
    # the order against that migration does not matter.
    dependencies = [("lifecycle", "0004_task_check")]

    operations = [
        migrations.RunSQL(BODY_TYPE + CAPTURE_FUNCTION, REVERSE_CAPTURE),
        migrations.RunSQL(NOTIFY_FUNCTION, REVERSE_NOTIFY),
    ]
