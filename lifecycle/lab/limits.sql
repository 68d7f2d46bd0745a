-- What the lab API asks before it accepts a task (lifecycle/lab/limits.py).

-- lock --
-- One create at a time checks and inserts, so two cannot both fit the last of a budget.
SELECT pg_advisory_xact_lock(hashtext('lifecycle.lab.limits'))

-- sleep_in_flight --
-- Seconds of sleep the worker still owes: every attempt of each unfinished sleeping task
-- of the last few minutes (a task that stays unfinished for good, missing_commit's, stops
-- counting after that).
SELECT coalesce(sum((config->>'sleep')::float8
                    * (1 + coalesce((config->>'fail_times')::int, 0))), 0)
  FROM lab_task
 WHERE status IN ('PENDING', 'RUNNING')
   AND created_at >= now() - make_interval(secs => %s)
   AND jsonb_typeof(config->'sleep') = 'number'
   AND (config->>'sleep')::float8 > 0

-- last_redelivery --
-- Seconds since the newest task with the redelivery switch (NULL: none).
SELECT extract(epoch FROM now() - max(created_at))::float8
  FROM lab_task
 WHERE config->'redelivery' = 'true'::jsonb
   AND created_at >= now() - make_interval(secs => %s)
