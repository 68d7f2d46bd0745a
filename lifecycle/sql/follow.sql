-- The follower's reads of the inspector's own store (lifecycle/capture/follower.py).

-- watched_databases --
SELECT name, url FROM lifecycle_watched_database ORDER BY name

-- record_problem --
-- What the follower found wrong with a watched database's capture ('' when nothing).
UPDATE lifecycle_watched_database SET problem = %(problem)s, checked_at = now()
 WHERE name = %(name)s

-- table_events --
-- Each watched table's events in the store: how many, and the newest one's time.
SELECT coalesce(body ->> 'database', ''), body ->> 'table', count(*), max(at)
  FROM lifecycle_event
 WHERE source = 'db'
 GROUP BY 1, 2

-- copy_events --
-- What a drain of an outbox moved (outbox.sql: drain), piped in unread, in its order. A
-- uuid stored before (a copy made before a crash) fails it whole: then the staged way.
COPY lifecycle_event (uuid, task_key, source, kind, status, at, txid, body) FROM STDIN

-- create_staging --
CREATE TEMP TABLE IF NOT EXISTS lifecycle_follow_batch (
    n bigint GENERATED ALWAYS AS IDENTITY, uuid uuid, task_key text, source text, kind text,
    status text, at timestamptz, txid bigint, body jsonb
) ON COMMIT DELETE ROWS

-- copy_staging --
COPY lifecycle_follow_batch (uuid, task_key, source, kind, status, at, txid, body) FROM STDIN

-- insert_from_staging --
-- A uuid already there (copied before a crash) is skipped; a row keeps its at, which is
-- part of the event table's unique key (uuid, at).
INSERT INTO lifecycle_event (uuid, task_key, source, kind, status, at, txid, body, received_at)
SELECT uuid, task_key, source, kind, status, at, txid, body, clock_timestamp()
  FROM lifecycle_follow_batch
 ORDER BY n
ON CONFLICT (uuid, at) DO NOTHING
