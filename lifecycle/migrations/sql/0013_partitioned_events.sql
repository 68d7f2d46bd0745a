-- The frozen SQL of migration lifecycle 0013_partitioned_events: lifecycle_event becomes a
-- table partitioned by range of `at`, one partition an ISO week (Monday 00:00 UTC to the
-- next Monday) and a default one, and back.
-- {aside} is the name the table being replaced is set aside under, {key} the columns of the
-- primary key and {uuid} those of the uuid's unique constraint (filled in by the migration).
-- Never edit it.

-- set_aside --
-- The table being replaced, renamed with its id sequence, and stripped of the names its
-- successor takes (index names are the schema's) and of its notify trigger.
LOCK TABLE lifecycle_event IN ACCESS EXCLUSIVE MODE;
ALTER TABLE lifecycle_event RENAME TO {aside};
ALTER SEQUENCE lifecycle_event_id_seq RENAME TO {aside}_id_seq;
DROP TRIGGER lifecycle_event_notify ON {aside};
ALTER TABLE {aside} DROP CONSTRAINT lifecycle_event_pkey, DROP CONSTRAINT lifecycle_event_uuid_key;
DROP INDEX lifecycle_event_task_id, lifecycle_event_expect;

-- create_partitioned --
-- Partitioned by `at`, the producer's own time: a redelivered event carries the same one,
-- so it lands in the same partition, where (uuid, at) finds it. A partition an ISO week
-- (from Monday 00:00 UTC), lifecycle_event_wYYYYMMDD after its Monday, for this week and
-- the next 2 and for each week of the last 400 days that holds events; every other row,
-- whatever its clock said, goes to the default.
CREATE TABLE lifecycle_event (
    LIKE {aside} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMPRESSION
) PARTITION BY RANGE (at);
CREATE TABLE lifecycle_event_default PARTITION OF lifecycle_event DEFAULT;
DO $do$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    this_week date := date_trunc('week', now() AT TIME ZONE 'UTC')::date;
    week date;
BEGIN
    FOR week IN
        SELECT w::date
          FROM generate_series(this_week::timestamp, (this_week + 14)::timestamp,
                               interval '7 days') AS w
        UNION
        SELECT DISTINCT date_trunc('week', at AT TIME ZONE 'UTC')::date
          FROM {aside}
         WHERE at >= (today - 400)::timestamp AT TIME ZONE 'UTC'
           AND at < (this_week + 21)::timestamp AT TIME ZONE 'UTC'
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF lifecycle_event FOR VALUES FROM (%L) TO (%L)',
            'lifecycle_event_w' || to_char(week, 'YYYYMMDD'),
            week::timestamp AT TIME ZONE 'UTC',
            (week + 7)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END
$do$;

-- create_plain --
-- The table as 0001 made it: one heap, no partition.
CREATE TABLE lifecycle_event (
    LIKE {aside} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMPRESSION
);

-- fill --
-- The rows, then the keys and indexes (faster built once than kept up row by row), the
-- sequence where it was, the notify trigger (after the copy: the copied rows are not news),
-- the grants the old table and sequence had (0010's capture role among them), and the old
-- table gone. The reverse fails on its unique (uuid) if two events share a uuid at two
-- times, which the partitioned table allows.
INSERT INTO lifecycle_event SELECT * FROM {aside};
SELECT setval(pg_get_serial_sequence('lifecycle_event', 'id'), last_value, is_called)
  FROM {aside}_id_seq;
ALTER TABLE lifecycle_event
    ADD CONSTRAINT lifecycle_event_pkey PRIMARY KEY ({key}),
    ADD CONSTRAINT lifecycle_event_uuid_key UNIQUE ({uuid});
CREATE INDEX lifecycle_event_task_id ON lifecycle_event (task_key, id);
CREATE INDEX lifecycle_event_expect ON lifecycle_event (task_key, id DESC)
 WHERE kind = 'expect' AND source = 'probe';
CREATE TRIGGER lifecycle_event_notify AFTER INSERT ON lifecycle_event
FOR EACH ROW EXECUTE FUNCTION lifecycle_event_notify();
DO $do$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE lifecycle_event_id_seq'
                              ELSE 'TABLE lifecycle_event' END AS target,
               a.privilege_type, a.is_grantable,
               CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS grantee
          FROM pg_class c, aclexplode(c.relacl) AS a
         WHERE c.oid IN ('{aside}'::regclass, '{aside}_id_seq'::regclass)
           AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, g.target, g.grantee,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$do$;
DROP TABLE {aside};
ANALYZE lifecycle_event;
