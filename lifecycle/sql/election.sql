-- The roles one node of a deployment holds at a time, elected through PostgreSQL
-- (lifecycle/nodes/election.py): a session advisory lock per role in the inspector's database, on
-- a connection of its own.

-- keepalive --
-- The server notices a holder whose host is gone within about 5 s (a dead peer's
-- backend otherwise keeps its lock until TCP gives up, minutes later): a standby then
-- takes the role. The holder stops before (it misses its pings for LOST_AFTER).
SET tcp_keepalives_idle = 2;
SET tcp_keepalives_interval = 1;
SET tcp_keepalives_count = 3;
SET tcp_user_timeout = 5000

-- try_lock --
SELECT pg_try_advisory_lock(%(space)s::int, %(role)s::int)

-- ping --
SELECT 1

-- holders --
-- Which connection holds each role's lock: its application_name names the node.
SELECT l.objid::bigint AS role_key, a.application_name, a.backend_start, a.client_addr
  FROM pg_locks AS l
  JOIN pg_stat_activity AS a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = (%(space)s::bigint & 4294967295)
