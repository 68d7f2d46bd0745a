-- The frozen SQL of migration lifecycle 0005_cheaper_capture: a cheaper capture function,
-- the same events as 0002 (the migration's docstring says how and why). Never edit it.

-- body_type --
-- The composite type of a db event's body.
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

-- capture_function --
-- lifecycle_capture(), computing the same events with less work.
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

-- notify_function --
-- lifecycle_event_notify() by assignment instead of PERFORM.
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

-- body_type_reverse --
-- Run after 0002's capture_function, which takes the function back to its 0002 body.
DROP TYPE IF EXISTS lifecycle_capture_body;

-- notify_trigger_reverse --
-- Run before 0002's notify_function, which creates the trigger again.
DROP TRIGGER IF EXISTS lifecycle_event_notify ON lifecycle_event;
