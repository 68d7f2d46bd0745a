-- The foreign service's own table, in its own database.
CREATE TABLE jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    state text NOT NULL DEFAULT 'queued',
    mode text NOT NULL DEFAULT 'ok',
    result text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
