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

import importlib

from django.db import migrations

capture_0002 = importlib.import_module("lifecycle.migrations.0002_capture_trigger")

# Unqualified names throughout: ``SET search_path FROM CURRENT`` pins the schema the
# migration runs in (and the capture benchmark creates copies in a schema of its own).
BODY_TYPE = r"""
CREATE TYPE lifecycle_capture_body AS (
    schema int,
    "table" text,
    op text,
    old_status text,
    new_status text,
    changed text[],
    "values" jsonb,
    application_name text,
    pid int,
    "user" text
);
COMMENT ON TYPE lifecycle_capture_body IS
    'The body of a db event, as lifecycle_capture() writes it (event schema version 1).';
"""

CAPTURE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION lifecycle_capture() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
-- Installed on a watched table as
--   CREATE TRIGGER lifecycle_capture AFTER INSERT OR UPDATE OR DELETE ON t
--   FOR EACH ROW EXECUTE FUNCTION lifecycle_capture('<key column>', '<status column>');
-- It runs in the writer's transaction, so the event exists if and only if the change commits.
-- The event table's own trigger sends the NOTIFY.
DECLARE
    new_row jsonb;
    old_row jsonb;
    changed text[];
    changed_values jsonb;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        new_row := to_jsonb(NEW);
        old_row := to_jsonb(OLD);
        -- One pass: the changed columns (sorted) and their new values, long ones cut.
        SELECT array_agg(n.key ORDER BY n.key),
               jsonb_object_agg(n.key,
                   CASE WHEN length(n.value::text) > 500
                        THEN to_jsonb(left(new_row ->> n.key, 500) || '…')
                        ELSE n.value END)
          INTO changed, changed_values
          FROM jsonb_each(new_row) AS n
         WHERE n.value IS DISTINCT FROM old_row -> n.key;
        IF changed IS NULL THEN
            RETURN NULL;  -- an UPDATE that changed nothing is not a change
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        new_row := to_jsonb(NEW);
        SELECT coalesce(array_agg(n.key ORDER BY n.key), '{}'),
               coalesce(jsonb_object_agg(n.key,
                   CASE WHEN length(n.value::text) > 500
                        THEN to_jsonb(left(new_row ->> n.key, 500) || '…')
                        ELSE n.value END), '{}')
          INTO changed, changed_values
          FROM jsonb_each(new_row) AS n;
    ELSE
        old_row := to_jsonb(OLD);
        SELECT coalesce(array_agg(k ORDER BY k), '{}')
          INTO changed
          FROM jsonb_object_keys(old_row) AS k;
        changed_values := '{}';
    END IF;

    INSERT INTO lifecycle_event (task_key, source, kind, status, at, txid, body)
    VALUES (
        -- Instrumentation must never fail the writer: a NULL key and an over-long status
        -- (the event table keeps 64 characters) are recorded, not refused.
        coalesce(coalesce(new_row, old_row) ->> TG_ARGV[0], '(null)'),
        'db',
        lower(TG_OP),
        left(coalesce(new_row, old_row) ->> TG_ARGV[1], 64),
        clock_timestamp(),
        pg_current_xact_id()::text::bigint,
        to_jsonb(ROW(
            1,
            TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
            TG_OP,
            old_row ->> TG_ARGV[1],
            new_row ->> TG_ARGV[1],
            changed,
            changed_values,
            current_setting('application_name'),
            pg_backend_pid(),
            session_user
        )::lifecycle_capture_body)
    );
    RETURN NULL;
END
$fn$;
"""

NOTIFY_FUNCTION = r"""
CREATE OR REPLACE FUNCTION lifecycle_event_notify() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
DECLARE
    sent text;
BEGIN
    -- The id only: payloads are capped at 8000 bytes, and listeners read the row.
    -- An assignment rather than PERFORM: PL/pgSQL evaluates it without an executor.
    sent := pg_notify('lifecycle_events', NEW.id::text);
    RETURN NULL;
END
$fn$;
"""

# Back to 0002, word for word: its function, and its notify function and trigger.
REVERSE_CAPTURE = capture_0002.CAPTURE_FUNCTION + "DROP TYPE IF EXISTS lifecycle_capture_body;"
REVERSE_NOTIFY = (
    "DROP TRIGGER IF EXISTS lifecycle_event_notify ON lifecycle_event;"
    + capture_0002.NOTIFY_FUNCTION
)


class Migration(migrations.Migration):
    # CREATE OR REPLACE keeps the function that lab.0002_capture's trigger points at, so
    # the order against that migration does not matter.
    dependencies = [("lifecycle", "0004_task_check")]

    operations = [
        migrations.RunSQL(BODY_TYPE + CAPTURE_FUNCTION, REVERSE_CAPTURE),
        migrations.RunSQL(NOTIFY_FUNCTION, REVERSE_NOTIFY),
    ]
