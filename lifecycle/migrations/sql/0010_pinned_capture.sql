-- The frozen SQL of migration lifecycle 0010_pinned_capture: lifecycle_capture() with the
-- search_path pinned to pg_catalog, pg_temp and every name of ours qualified by {schema},
-- the schema the migration runs in ({schema}, {role} and {role_literal} are replaced, quoted,
-- by the migration). Never edit it.

-- capture_function --
-- 0005's lifecycle_capture(), word for word but for the search_path and the qualified names.
CREATE OR REPLACE FUNCTION {schema}.lifecycle_capture() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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

    INSERT INTO {schema}.lifecycle_event (task_key, source, kind, status, at, txid, body)
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
        )::{schema}.lifecycle_capture_body)
    );
    RETURN NULL;
END
$fn$;

-- owner_role --
-- The role that owns it: no login, and the right to insert events, nothing else. The
-- migration makes it the owner only when it runs as a superuser (see its docstring).
DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {role_literal}) THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
END
$do$;
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT INSERT ON {schema}.lifecycle_event TO {role};
GRANT USAGE ON SEQUENCE {schema}.lifecycle_event_id_seq TO {role};
-- A new owner needs CREATE on the function's schema when it is given the function: for
-- that moment only.
GRANT CREATE ON SCHEMA {schema} TO {role};
ALTER FUNCTION {schema}.lifecycle_capture() OWNER TO {role};
REVOKE CREATE ON SCHEMA {schema} FROM {role};

-- owner_role_reverse --
ALTER FUNCTION {schema}.lifecycle_capture() OWNER TO CURRENT_USER;
