-- The outline of a long history (lifecycle/store/outline.py): a task page that holds too many
-- events to render at once shows these, then its events in windows. Every block that
-- returns events selects the columns EventRecord.from_row maps, in its order:
--   id, source, kind, task_key, status, at::text, received_at::text, txid, body::text, uuid::text
-- ``e.at`` is qualified wherever a block orders by it: ``at`` alone is the text column.

-- longer_than --
-- Whether a task has more than this many events (reads at most that many).
SELECT count(*) > %(n)s FROM (SELECT 1 FROM lifecycle_event WHERE task_key = %(key)s LIMIT %(n)s + 1) e

-- newest --
-- A task's newest event id (the (task_key, id) index's last entry): the outline cache's key.
SELECT max(id) FROM lifecycle_event WHERE task_key = %(key)s

-- span --
-- A task's first and last times, µs since the epoch (two probes of the time index).
SELECT (SELECT (extract(epoch FROM e.at) * 1000000)::bigint FROM lifecycle_event e
         WHERE task_key = %(key)s ORDER BY e.at LIMIT 1),
       (SELECT (extract(epoch FROM e.at) * 1000000)::bigint FROM lifecycle_event e
         WHERE task_key = %(key)s ORDER BY e.at DESC LIMIT 1)

-- columns --
-- Events per lane and slice of time (the slices start at ``%(bounds)s``, the first's
-- start left out: 0 is the first slice), with the oldest and newest id of each: the
-- swimlane's dots, the windows' counts, the history's count and newest id. Attempt
-- steps are counted apart (``step``): the swimlane draws them as bars.
SELECT source, width_bucket(at, %(bounds)s::timestamptz[]),
       source = 'broker' AND kind IN ('start', 'ack', 'fail', 'nack', 'skip') AS step,
       count(*), min(id), max(id)
  FROM lifecycle_event
 WHERE task_key = %(key)s
 GROUP BY 1, 2, 3

-- marks --
-- Every commit, attempt step and gap, in time order, with the little of its body the
-- outline and the swimlane show: for a commit its old and new status, changed columns,
-- writer, table and commit time; for a step its message, attempt and actor.
SELECT id, source, kind, status, (extract(epoch FROM e.at) * 1000000)::bigint, txid,
       CASE WHEN source = 'db' THEN body->>'old_status' WHEN source = 'broker' THEN body->>'message_id' END,
       CASE WHEN source = 'db' THEN body->>'new_status' WHEN source = 'broker' THEN body->>'attempt' END,
       CASE WHEN source = 'db' THEN (body->'changed')::text WHEN source = 'broker' THEN body->>'actor' END,
       CASE WHEN source = 'db' THEN body->>'application_name' END,
       CASE WHEN source = 'db' THEN body->>'table' END,
       CASE WHEN source = 'db' THEN body->>'committed_at' END
  FROM lifecycle_event e
 WHERE task_key = %(key)s
   AND (source = 'db' OR kind = 'gap'
        OR (source = 'broker' AND kind IN ('start', 'ack', 'fail', 'nack', 'skip')))
 ORDER BY e.at, id

-- commits_of_versions --
-- The commits whose transaction wrote one of these 32-bit versions (a window's reads'), or
-- whose row, written in a savepoint, has it as its own xmin.
SELECT id, source, kind, task_key, status, e.at::text, received_at::text, txid,
       jsonb_build_object('old_status', body->'old_status', 'new_status', body->'new_status',
                          'changed', body->'changed', 'table', body->'table',
                          'application_name', body->'application_name',
                          'xmin', body->'xmin')::text,
       uuid::text
  FROM lifecycle_event e
 WHERE task_key = %(key)s AND source = 'db'
   AND (txid %% 4294967296 = ANY(%(versions)s)
        OR CASE WHEN jsonb_typeof(body->'xmin') = 'number' THEN (body->>'xmin')::numeric END
           = ANY(%(versions)s::numeric[]))
 ORDER BY e.at, id

-- window --
-- Events after one place in the order and before another (either may be open), oldest
-- first. A place is (time in µs, id); (t, 0) is the start of time t.
SELECT id, source, kind, task_key, status, e.at::text, received_at::text, txid, body::text,
       uuid::text
  FROM lifecycle_event e
 WHERE task_key = %(key)s
   AND (%(after_us)s::bigint IS NULL
        OR (e.at, id) > (timestamptz 'epoch' + %(after_us)s::bigint * interval '1 microsecond', %(after_id)s))
   AND (%(before_us)s::bigint IS NULL
        OR (e.at, id) < (timestamptz 'epoch' + %(before_us)s::bigint * interval '1 microsecond', %(before_id)s))
 ORDER BY e.at, id
 LIMIT %(limit)s

-- window_end --
-- The same, newest first: the last events before a place.
SELECT id, source, kind, task_key, status, e.at::text, received_at::text, txid, body::text,
       uuid::text
  FROM lifecycle_event e
 WHERE task_key = %(key)s
   AND (%(after_us)s::bigint IS NULL
        OR (e.at, id) > (timestamptz 'epoch' + %(after_us)s::bigint * interval '1 microsecond', %(after_id)s))
   AND (%(before_us)s::bigint IS NULL
        OR (e.at, id) < (timestamptz 'epoch' + %(before_us)s::bigint * interval '1 microsecond', %(before_id)s))
 ORDER BY e.at DESC, id DESC
 LIMIT %(limit)s

-- count_between --
-- How many events lie between two places (either may be open): a window's count, read
-- from the (task_key, at, id) index alone.
SELECT count(*)
  FROM lifecycle_event e
 WHERE task_key = %(key)s
   AND (%(after_us)s::bigint IS NULL
        OR (e.at, id) > (timestamptz 'epoch' + %(after_us)s::bigint * interval '1 microsecond', %(after_id)s))
   AND (%(before_us)s::bigint IS NULL
        OR (e.at, id) < (timestamptz 'epoch' + %(before_us)s::bigint * interval '1 microsecond', %(before_id)s))

-- run_members --
-- Reads of one source from one place to another (both included): a folded run's events.
SELECT id, source, kind, task_key, status, e.at::text, received_at::text, txid, body::text,
       uuid::text
  FROM lifecycle_event e
 WHERE task_key = %(key)s AND source = %(source)s AND kind = 'read'
   AND (e.at, id) > (timestamptz 'epoch' + %(after_us)s::bigint * interval '1 microsecond', %(after_id)s)
   AND (e.at, id) <= (timestamptz 'epoch' + %(until_us)s::bigint * interval '1 microsecond', %(until_id)s)
 ORDER BY e.at, id
 LIMIT %(limit)s

-- commits_between --
-- The commits after one place up to another (included), as ``marks`` selects them: a
-- group of the outline's, opened.
SELECT id, source, kind, status, (extract(epoch FROM e.at) * 1000000)::bigint, txid,
       body->>'old_status', body->>'new_status', (body->'changed')::text,
       body->>'application_name', body->>'table', body->>'committed_at'
  FROM lifecycle_event e
 WHERE task_key = %(key)s AND source = 'db'
   AND (e.at, id) > (timestamptz 'epoch' + %(after_us)s::bigint * interval '1 microsecond', %(after_id)s)
   AND (e.at, id) <= (timestamptz 'epoch' + %(until_us)s::bigint * interval '1 microsecond', %(until_id)s)
 ORDER BY e.at, id
 LIMIT %(limit)s
