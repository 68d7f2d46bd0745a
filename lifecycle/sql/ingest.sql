-- The ingestor's writes (lifecycle/ingest.py). received_at is the statement's time
-- (statement_timestamp(), the column's default, as the capture trigger's rows have it)
-- for copy_events, clock_timestamp() for the others; never now(), the transaction's start.

-- insert_row --
-- One event; a known uuid (a redelivered message) is ignored. The conflict is on (uuid, at),
-- the event table's unique key (it is partitioned by at): a redelivery carries the same at.
INSERT INTO lifecycle_event (uuid, task_key, source, kind, status, at, txid, body, received_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())
ON CONFLICT (uuid, at) DO NOTHING

-- copy_events --
-- A batch straight into the event table, in its order. A uuid stored before (a redelivered
-- message) fails it whole, and the ingestor stores it through the staging table instead.
COPY lifecycle_event (uuid, task_key, source, kind, status, at, txid, body) FROM STDIN

-- create_staging --
-- A batch is copied into this session's temporary table, then inserted in one statement.
CREATE TEMP TABLE IF NOT EXISTS lifecycle_ingest_batch (
    n int, uuid uuid, task_key text, source text, kind text, status text,
    at timestamptz, txid bigint, body jsonb
) ON COMMIT DELETE ROWS

-- copy_staging --
COPY lifecycle_ingest_batch (n, uuid, task_key, source, kind, status, at, txid, body) FROM STDIN

-- insert_from_staging --
INSERT INTO lifecycle_event (uuid, task_key, source, kind, status, at, txid, body, received_at)
SELECT uuid, task_key, source, kind, status, at, txid, body, clock_timestamp()
  FROM lifecycle_ingest_batch
 ORDER BY n
ON CONFLICT (uuid, at) DO NOTHING
