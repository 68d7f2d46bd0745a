-- The frozen SQL of migration lifecycle 0002_capture_trigger: the generic capture trigger
-- function and the NOTIFY on the event table. Never edit it: the migration must keep
-- producing the same schema on a fresh database. Later changes go into new files.

-- capture_function --
-- lifecycle_capture(): one db event per committed change, in the writer's transaction.
CREATE OR REPLACE FUNCTION lifecycle_capture() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
-- Installed on a watched table as
--   CREATE TRIGGER lifecycle_capture AFTER INSERT OR UPDATE OR DELETE ON t
--   FOR EACH ROW EXECUTE FUNCTION lifecycle_capture('<key column>', '<status column>');
-- It runs in the writer's transaction, so the event exists if and only if the change commits.
DECLARE
    key_column text := TG_ARGV[0];
    status_column text := TG_ARGV[1];
    new_row jsonb;
    old_row jsonb;
    changed text[];
    changed_values jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;

    IF TG_OP = 'UPDATE' THEN
        SELECT coalesce(array_agg(n.key ORDER BY n.key), '{}')
          INTO changed
          FROM jsonb_each(new_row) AS n
         WHERE n.value IS DISTINCT FROM old_row -> n.key;
        IF cardinality(changed) = 0 THEN
            RETURN NULL;  -- an UPDATE that changed nothing is not a change
        END IF;
    ELSE
        SELECT coalesce(array_agg(k ORDER BY k), '{}')
          INTO changed
          FROM jsonb_object_keys(coalesce(new_row, old_row)) AS k;
    END IF;

    -- New values of the changed columns, long ones cut, so the timeline can show them.
    SELECT coalesce(jsonb_object_agg(
               c,
               CASE WHEN length((new_row -> c)::text) > 500
                    THEN to_jsonb(left(new_row ->> c, 500) || '…')
                    ELSE new_row -> c END), '{}')
      INTO changed_values
      FROM unnest(changed) AS c
     WHERE new_row IS NOT NULL;

    INSERT INTO lifecycle_event (task_key, source, kind, status, at, txid, body)
    VALUES (
        coalesce(new_row, old_row) ->> key_column,
        'db',
        lower(TG_OP),
        coalesce(new_row, old_row) ->> status_column,
        clock_timestamp(),
        pg_current_xact_id()::text::bigint,
        jsonb_build_object(
            'schema', 1,
            'table', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
            'op', TG_OP,
            'old_status', old_row ->> status_column,
            'new_status', new_row ->> status_column,
            'changed', to_jsonb(changed),
            'values', changed_values,
            'application_name', current_setting('application_name'),
            'pid', pg_backend_pid(),
            'user', session_user
        )
    );
    RETURN NULL;
END
$fn$;

-- notify_function --
-- lifecycle_event_notify() and its trigger: NOTIFY lifecycle_events with the event's id.
CREATE OR REPLACE FUNCTION lifecycle_event_notify() RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    -- The id only: payloads are capped at 8000 bytes, and listeners read the row.
    PERFORM pg_notify('lifecycle_events', NEW.id::text);
    RETURN NULL;
END
$fn$;

CREATE TRIGGER lifecycle_event_notify AFTER INSERT ON lifecycle_event
FOR EACH ROW EXECUTE FUNCTION lifecycle_event_notify();

-- capture_function_reverse --
DROP FUNCTION IF EXISTS lifecycle_capture() CASCADE;

-- notify_function_reverse --
DROP TRIGGER IF EXISTS lifecycle_event_notify ON lifecycle_event;
DROP FUNCTION IF EXISTS lifecycle_event_notify();
