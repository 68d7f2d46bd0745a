-- The ingestor's writes (lifecycle/ingest.py). received_at is clock_timestamp(), not the
-- column default now(): now() is the transaction's start, the same for a whole batch.

-- insert_row --
-- One event; a known uuid (a redelivered message) is ignored. The conflict is on (uuid, at),
-- the event table's unique key (it is partitioned by at): a redelivery carries the same at.
INSERT INTO lifecycle_event (uuid, task_key, source, kind, status, at, txid, body, received_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())
ON CONFLICT (uuid, at) DO NOTHING

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
