-- The upkeep of the event table's partitions (lifecycle/store/retention.py, migration 0013).
-- {partition} is a partition's name, {lower} and {upper} its bounds (filled in, quoted, by
-- retention.py).

-- lock --
-- One upkeep at a time: creating and dropping partitions wait for each other, here.
SELECT pg_advisory_xact_lock(hashtext('lifecycle.store.retention'))

-- lock_timeout --
-- How long a lock of the event table may be waited for. Every open transaction that wrote
-- an event holds one (a captured writer's among them), and each writer that comes after a
-- waiting ALTER or DROP queues behind it: the wait is short, and a refusal is retried later.
SELECT set_config('lock_timeout', %s, true)

-- partitions --
SELECT c.relname
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'lifecycle_event'::regclass
 ORDER BY c.relname

-- lock_default --
-- No row may land in the default partition between taking a new week's rows out of it and
-- attaching that week's partition: the attach would find it there and fail. (Attaching locks
-- the default partition so anyway, to look for such rows.)
LOCK TABLE lifecycle_event_default IN ACCESS EXCLUSIVE MODE

-- create_detached --
-- Made apart and then attached: ATTACH PARTITION locks the event table in SHARE UPDATE
-- EXCLUSIVE mode, which lets events be written meanwhile, where CREATE TABLE ... PARTITION
-- OF would lock it ACCESS EXCLUSIVE. Attaching adds the indexes and the notify trigger.
CREATE TABLE {partition} (LIKE lifecycle_event INCLUDING DEFAULTS)

-- move_from_default --
WITH moved AS (
    DELETE FROM lifecycle_event_default WHERE at >= {lower} AND at < {upper} RETURNING *
)
INSERT INTO {partition} SELECT * FROM moved

-- attach --
ALTER TABLE lifecycle_event ATTACH PARTITION {partition} FOR VALUES FROM ({lower}) TO ({upper})

-- count --
SELECT count(*) FROM {partition}

-- checked_tasks --
-- The tasks of a partition that have a stored check (lifecycle_task_check).
SELECT DISTINCT task_key FROM {partition}
 WHERE task_key IN (SELECT task_key FROM lifecycle_task_check)

-- drop --
-- Locks the event table ACCESS EXCLUSIVE for a moment (DETACH ... CONCURRENTLY is refused
-- where a default partition exists).
DROP TABLE {partition}

-- count_default --
SELECT count(*) FROM lifecycle_event_default WHERE at < %s

-- prune_default --
-- The default partition's old rows, and the tasks they belonged to.
WITH gone AS (DELETE FROM lifecycle_event_default WHERE at < %s RETURNING task_key)
SELECT count(*), array(SELECT DISTINCT task_key FROM gone) FROM gone

-- forget_tasks --
-- The stored checks of these tasks that have no event left.
DELETE FROM lifecycle_task_check c
 WHERE c.task_key = ANY(%s)
   AND NOT EXISTS (SELECT FROM lifecycle_event e WHERE e.task_key = c.task_key)

-- oldest_in --
SELECT min(at) FROM {partition}

-- oldest_in_default --
SELECT min(at) FROM lifecycle_event_default WHERE at >= %s
