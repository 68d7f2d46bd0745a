-- Each node's row in lifecycle_node (lifecycle/nodes/heartbeat.py): made when it starts, seen
-- every few seconds, marked when it stops.

-- register --
-- A node of the same name that ran before (a restart) is replaced: its row is this one now.
INSERT INTO lifecycle_node (name, roles, address, host, pid, started_at, seen_at, stopped_at)
VALUES (%(name)s, %(roles)s, %(address)s, %(host)s, %(pid)s, now(), now(), NULL)
ON CONFLICT (name) DO UPDATE
   SET roles = EXCLUDED.roles, address = EXCLUDED.address, host = EXCLUDED.host,
       pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, seen_at = EXCLUDED.seen_at,
       stopped_at = NULL

-- beat --
-- The host and pid tell this node's row from another's of the same name.
UPDATE lifecycle_node SET seen_at = now()
 WHERE name = %(name)s AND pid = %(pid)s AND host = %(host)s AND stopped_at IS NULL

-- owner --
-- Who has the name now, when a beat found no row of this node's.
SELECT host, pid FROM lifecycle_node WHERE name = %(name)s AND stopped_at IS NULL

-- stop --
UPDATE lifecycle_node SET stopped_at = now(), seen_at = now()
 WHERE name = %(name)s AND pid = %(pid)s AND host = %(host)s

-- prune --
-- Nodes not seen for a long time (gone or stopped long ago): the table stays small.
DELETE FROM lifecycle_node WHERE seen_at < now() - make_interval(secs => %(after)s)
