-- The live feed's reads (lifecycle/feed/listener.py). The module's docstring explains the
-- position it keeps (high and gaps) and why the bound is a fresh transaction id.

-- fetch --
-- The snapshot's xmin is read in a one-row subquery so that an empty result still reports
-- it, and it is that of the very snapshot the rows were read with (one statement,
-- autocommit). The bound, when asked for, is assigned after that snapshot was taken.
-- Every visible gap is returned (so a gap not returned is invisible), and new rows up to a
-- limit. Two branches rather than one OR: each keeps its index scan in a generic plan,
-- which psycopg's prepared statements come to use. The event's columns are those
-- EventRecord.from_row maps, after xmin and bound.
SELECT s.xmin, s.bound,
       e.id, e.source, e.kind, e.task_key, e.status, e.at::text, e.received_at::text, e.txid,
       e.body::text, e.uuid::text
  FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
               CASE WHEN %(bound)s THEN pg_current_xact_id()::text::bigint END AS bound) AS s
  LEFT JOIN LATERAL (
        SELECT * FROM lifecycle_event WHERE id = ANY(%(gaps)s::bigint[])
        UNION ALL
        (SELECT * FROM lifecycle_event WHERE id > %(high)s ORDER BY id LIMIT %(limit)s)
       ) AS e ON true
 ORDER BY e.id

-- start --
-- Where a feed with no start position begins: after the last id handed out (not the
-- largest id committed, which may be far behind after deletes), watching the ids missing
-- among the last few, as their transactions may still be open.
SELECT s.last,
       array(SELECT id FROM lifecycle_event
              WHERE id > s.last - %(lookback)s AND id <= s.last) AS seen
  FROM (SELECT coalesce(pg_sequence_last_value(
                   pg_get_serial_sequence('lifecycle_event', 'id')::regclass), 0) AS last) AS s
