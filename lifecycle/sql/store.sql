-- Reads of the event store (lifecycle/store/eventlog.py). Every block that returns events selects
-- the columns EventRecord.from_row maps, in its order:
--   id, source, kind, task_key, status, at::text, received_at::text, txid, body::text, uuid::text

-- task_events --
-- A task's whole history, in arrival order.
SELECT id, source, kind, task_key, status, at::text, received_at::text, txid, body::text, uuid::text
  FROM lifecycle_event
 WHERE task_key = %s
 ORDER BY id

-- tasks_events --
-- Several tasks' whole histories, each in arrival order (the maintainer's rechecks). One
-- index scan a task (LATERAL): "task_key = ANY(...)" of a hundred keys can make the planner
-- read the whole table when its statistics are missing or old.
SELECT e.id, e.source, e.kind, e.task_key, e.status, e.at::text, e.received_at::text, e.txid,
       e.body::text, e.uuid::text
  FROM unnest(%s::text[]) WITH ORDINALITY AS k(task_key, n)
 CROSS JOIN LATERAL (SELECT * FROM lifecycle_event l WHERE l.task_key = k.task_key) AS e
 ORDER BY k.n, e.id

-- events_after --
-- A task's first events after an id, in arrival order, up to a limit (a long page's
-- connection: what came after the page).
SELECT id, source, kind, task_key, status, at::text, received_at::text, txid, body::text, uuid::text
  FROM lifecycle_event
 WHERE task_key = %s AND id > %s
 ORDER BY id
 LIMIT %s

-- last_statuses --
-- A task's last commit with a status and last read with one, by time.
(SELECT id, source, kind, task_key, status, e.at::text, received_at::text, txid, body::text, uuid::text
   FROM lifecycle_event e
  WHERE task_key = %(key)s AND source = 'db' AND status IS NOT NULL
  ORDER BY e.at DESC, id DESC LIMIT 1)
UNION ALL
(SELECT id, source, kind, task_key, status, e.at::text, received_at::text, txid, body::text, uuid::text
   FROM lifecycle_event e
  WHERE task_key = %(key)s AND source IN ('api', 'probe') AND status IS NOT NULL
  ORDER BY e.at DESC, id DESC LIMIT 1)

-- task_gaps --
SELECT id, source, kind, task_key, status, e.at::text, received_at::text, txid, body::text, uuid::text
  FROM lifecycle_event e
 WHERE task_key = %s AND kind = 'gap'
 ORDER BY e.at, id

-- event --
SELECT id, source, kind, task_key, status, at::text, received_at::text, txid, body::text, uuid::text
  FROM lifecycle_event
 WHERE id = %s

-- events_by_id --
SELECT id, source, kind, task_key, status, at::text, received_at::text, txid, body::text, uuid::text
  FROM lifecycle_event
 WHERE id = ANY(%s)

-- recent_tasks --
-- Tasks by their newest event among the newest events (a window of that many, read backwards
-- through the primary key), newest first; with each row, how many tasks and events the
-- window holds, and its oldest id.
SELECT task_key, max(id), count(*) OVER () AS tasks, sum(count(*)) OVER () AS events,
       min(min(id)) OVER () AS oldest
  FROM (SELECT task_key, id FROM lifecycle_event ORDER BY id DESC LIMIT %s) w
 GROUP BY task_key
 ORDER BY max(id) DESC
 LIMIT %s

-- recent_checked --
-- The tasks whose newest event is older than an id, newest first, as the maintainer's
-- checks know them (their last_event_id index), but those named: when the maintainer has
-- checked every event up to that id, every such task has its check, and its newest id
-- has not moved since (a newer one would be past that id).
SELECT c.task_key, c.last_event_id
  FROM lifecycle_task_check c
 WHERE c.last_event_id < %(before)s
   AND NOT (c.task_key = ANY(%(found)s))
   AND (SELECT checked_through FROM lifecycle_check_cursor WHERE id = 1) >= %(before)s
   AND EXISTS (SELECT FROM lifecycle_event e WHERE e.id = c.last_event_id)  -- not pruned
 ORDER BY c.last_event_id DESC
 LIMIT %(limit)s

-- last_commit_statuses --
-- Each task's last committed status: its newest db event, found walking its (task_key, id)
-- index backwards (DISTINCT ON read every commit of a long history first).
SELECT k.task_key,
       (SELECT l.status FROM lifecycle_event l
         WHERE l.task_key = k.task_key AND l.source = 'db'
         ORDER BY l.task_key DESC, l.id DESC LIMIT 1)  -- the (task_key, id) index's order
  FROM unnest(%s::text[]) AS k(task_key)

-- checked_through --
SELECT coalesce((SELECT checked_through FROM lifecycle_check_cursor WHERE id = 1), 0)

-- task_extent --
-- Each task's first time and event count, through the (task_key, id) index. A history the
-- maintainer checked at more than %(exact)s events is not counted again: its check's count
-- and first time, and the events after the newest one it covers (an event committed late
-- with a lower id is counted at its next check, seconds later).
SELECT k.task_key,
       CASE WHEN c.task_key IS NULL THEN e.first_at ELSE least(c.first_at, e.first_at) END,
       coalesce(c.event_count, 0) + e.events
  FROM unnest(%(keys)s::text[]) AS k(task_key)
  LEFT JOIN lifecycle_task_check c
    ON c.task_key = k.task_key AND c.event_count > %(exact)s
 CROSS JOIN LATERAL (
       SELECT min(l.at) AS first_at, count(*) AS events
         FROM lifecycle_event l
        -- The row comparison only the (task_key, id) index serves: with a few long
        -- histories the planner's guess of a key's rows is huge, and it walked the
        -- primary key from the newest event instead.
        WHERE l.task_key = k.task_key
          AND (l.task_key, l.id) > (k.task_key, coalesce(c.last_event_id, 0))
       ) e
 WHERE c.task_key IS NOT NULL OR e.events > 0

-- tasks_newest_event --
SELECT task_key, max(id)
  FROM lifecycle_event
 WHERE task_key = ANY(%s)
 GROUP BY task_key
 ORDER BY max(id) DESC

-- task_summary --
SELECT task_key, max(id), min(at), count(*)
  FROM lifecycle_event
 WHERE task_key = %s
 GROUP BY task_key

-- task_stats --
-- Event count and newest id per task (with events), one index scan a task (LATERAL, as
-- tasks_events).
SELECT k.task_key, s.count, s.last
  FROM unnest(%s::text[]) AS k(task_key)
 CROSS JOIN LATERAL (SELECT count(*) AS count, max(id) AS last
                       FROM lifecycle_event l WHERE l.task_key = k.task_key) AS s
 WHERE s.count > 0

-- expected_stated --
-- The status the latest probe.expect event of each task states (a test's expectation), one
-- index scan a task.
SELECT k.task_key, e.status
  FROM unnest(%s::text[]) AS k(task_key)
 CROSS JOIN LATERAL (SELECT status FROM lifecycle_event l
                      WHERE l.task_key = k.task_key AND l.source = 'probe'
                        AND l.kind = 'expect'
                      ORDER BY l.id DESC LIMIT 1) AS e
 WHERE e.status IS NOT NULL

-- all_task_stats --
SELECT task_key, count(*), max(id)
  FROM lifecycle_event
 GROUP BY task_key
