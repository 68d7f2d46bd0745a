-- What `lifecycle status` and GET /api/status read (lifecycle/nodes/status.py): each a few
-- index probes, bounded, whatever the tables' size.

-- nodes --
SELECT name, roles, address, host, pid, started_at, seen_at, stopped_at,
       extract(epoch FROM now() - seen_at)::float8 AS silent
  FROM lifecycle_node
 ORDER BY seen_at DESC
 LIMIT %(limit)s

-- watched --
SELECT name, url FROM lifecycle_watched_database ORDER BY name LIMIT %(limit)s

-- maintain_lag --
-- The events after the maintainer's stored position (counted up to a cap), and how long
-- ago the oldest of them arrived.
WITH cursor AS (
    SELECT coalesce((SELECT checked_through FROM lifecycle_check_cursor WHERE id = 1), 0) AS at
)
SELECT cursor.at,
       (SELECT count(*) FROM (SELECT 1 FROM lifecycle_event
                               WHERE id > cursor.at LIMIT %(cap)s) AS behind),
       (SELECT extract(epoch FROM clock_timestamp() - received_at)::float8
          FROM lifecycle_event WHERE id > cursor.at ORDER BY id LIMIT 1)
  FROM cursor

-- outbox_lag --
-- Run in a watched database: the rows its outbox holds (counted up to a cap), and how
-- long ago the oldest of them was written (what the follower has not copied yet).
SELECT (SELECT count(*) FROM (SELECT 1 FROM lifecycle_capture.outbox LIMIT %(cap)s) AS pending),
       (SELECT extract(epoch FROM clock_timestamp() - at)::float8
          FROM lifecycle_capture.outbox ORDER BY id LIMIT 1)
