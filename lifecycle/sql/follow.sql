-- The follower's reads of the inspector's own store (lifecycle/follow.py).

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
