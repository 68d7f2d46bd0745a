-- How the lab API reads a task (lifecycle/lab/reads.py): the row, the version it read
-- (xmin) and the reading transaction's snapshot, in one statement.

-- read_task --
SELECT id, config, status, error, output, executions, created_at, updated_at, started_at,
       finished_at, xmin::text::bigint, pg_current_snapshot()::text
  FROM lab_task
 WHERE id = %s

-- current_snapshot --
SELECT pg_current_snapshot()::text

-- begin_snapshot --
-- BUG snapshot_read: one long transaction per task, whose snapshot every read reuses.
BEGIN ISOLATION LEVEL REPEATABLE READ

-- read_task_replica --
-- BUG replica_read: the same read on a hot standby, which also says it is one and how far
-- its replay had come (the commit time of the last transaction it replayed).
SELECT id, config, status, error, output, executions, created_at, updated_at, started_at,
       finished_at, xmin::text::bigint, pg_current_snapshot()::text, pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN pg_last_xact_replay_timestamp() END
  FROM lab_task
 WHERE id = %s
