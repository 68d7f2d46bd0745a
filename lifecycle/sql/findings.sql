-- The stored findings' writes (lifecycle/check/findings.py), the maintainer's.

-- keep --
-- Tasks' checks, with what the home page's search filters on, in one statement: each
-- parameter an array of one value a task (kinds as JSON arrays: an array of arrays would be
-- one two-dimensional array to PostgreSQL).
INSERT INTO lifecycle_task_check
       (task_key, event_count, last_event_id, expected, kinds, findings, status, first_at,
        last_at, scenario, verdict, checked_at)
SELECT c.task_key, c.event_count, c.last_event_id, c.expected,
       ARRAY(SELECT jsonb_array_elements_text(c.kinds)), c.findings, c.status, c.first_at,
       c.last_at, c.scenario, c.verdict, clock_timestamp()
  FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::text[], %s::jsonb[], %s::jsonb[],
              %s::text[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[])
       AS c(task_key, event_count, last_event_id, expected, kinds, findings, status,
            first_at, last_at, scenario, verdict)
ON CONFLICT (task_key) DO UPDATE
   SET event_count = excluded.event_count, last_event_id = excluded.last_event_id,
       expected = excluded.expected, kinds = excluded.kinds, findings = excluded.findings,
       status = excluded.status, first_at = excluded.first_at, last_at = excluded.last_at,
       scenario = excluded.scenario, verdict = excluded.verdict,
       checked_at = excluded.checked_at

-- tasks --
-- What a recheck of these tasks needs besides their histories, one row a task that has
-- events: their count and newest id (one index scan a task), the stored check, the latest
-- run (its expectation, scenario and verdict), and, for a task without a run, what its
-- latest probe.expect states (a test's expectation).
WITH keys AS (SELECT DISTINCT unnest(%s::text[]) AS task_key),
     runs AS (SELECT DISTINCT ON (task_key) task_key, expected, scenario, verdict
                FROM lifecycle_run
               WHERE task_key IN (SELECT task_key FROM keys)
               ORDER BY task_key, id DESC)
SELECT k.task_key, s.count, s.last,
       c.event_count, c.last_event_id, c.expected, c.verdict,
       r.task_key IS NOT NULL, r.expected, r.scenario, r.verdict, x.status
  FROM keys AS k
 CROSS JOIN LATERAL (SELECT count(*) AS count, max(id) AS last
                       FROM lifecycle_event l WHERE l.task_key = k.task_key) AS s
  LEFT JOIN lifecycle_task_check AS c ON c.task_key = k.task_key
  LEFT JOIN runs AS r ON r.task_key = k.task_key
  LEFT JOIN LATERAL (SELECT nullif(status, '') AS status FROM lifecycle_event l
                      WHERE r.task_key IS NULL AND l.task_key = k.task_key
                        AND l.source = 'probe' AND l.kind = 'expect'
                      ORDER BY l.id DESC LIMIT 1) AS x ON true
 WHERE s.count > 0
