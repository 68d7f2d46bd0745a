-- Catalog lookups of `lifecycle capture` (lifecycle/capture/trigger.py). Names given by the user
-- are only ever parameters here; the catalog's own spelling is what goes into DDL.

-- resolve_table --
SELECT c.oid, n.nspname, c.relname, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = to_regclass(%s)

-- table_columns --
SELECT attname FROM pg_attribute
 WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum

-- capture_function --
-- The schema of the trigger function lifecycle_capture(), if it is installed.
SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.oid = to_regprocedure('lifecycle_capture()')

-- table_trigger --
SELECT t.tgargs, t.tgnargs, t.tgparentid <> 0 FROM pg_trigger t
 WHERE t.tgrelid = %s AND t.tgname = %s

-- watched_tables --
-- Every table carrying the capture trigger (partitions inherit their parent's: not listed).
SELECT n.nspname, c.relname, t.tgargs, t.tgnargs, t.tgenabled <> 'D',
       array(SELECT attname::text FROM pg_attribute
              WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped)
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE t.tgname = %s AND p.proname = 'lifecycle_capture' AND t.tgparentid = 0
 ORDER BY n.nspname, c.relname
