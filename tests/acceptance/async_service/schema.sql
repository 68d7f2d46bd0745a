-- The tasks service's own table, in its own database (its migrations would create it).
CREATE TABLE tasks (
    id uuid PRIMARY KEY,
    status varchar(16) NOT NULL DEFAULT 'PENDING',
    mode varchar(32) NOT NULL DEFAULT 'ok',
    result text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
