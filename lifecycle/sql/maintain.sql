-- The maintainer's reads of the event table (lifecycle/check/maintainer.py): what moved since it
-- last looked, by primary key only.

-- moved --
-- The ids it missed (not committed when it looked) that are there now, and the rows past
-- the highest id it saw, up to a limit.
SELECT id, task_key FROM lifecycle_event WHERE id = ANY(%(gaps)s::bigint[])
UNION ALL
(SELECT id, task_key FROM lifecycle_event WHERE id > %(high)s ORDER BY id LIMIT %(limit)s)

-- present --
-- Which of the last ids up to a position are there: the others are gaps (their
-- transactions may still commit).
SELECT id FROM lifecycle_event WHERE id > %(low)s AND id <= %(high)s
