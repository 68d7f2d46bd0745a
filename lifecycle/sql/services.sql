-- What `lifecycle up` asks the server before it starts the stack (lifecycle/runtime/services.py).

-- database_exists --
SELECT 1 FROM pg_database WHERE datname = %s
