"""Subcommands of ``python manage.py lifecycle``: one module each, with ``add_arguments``
and ``handle``. Registered in ``SUBCOMMANDS`` by name."""

SUBCOMMANDS = {
    "up": "lifecycle.cli.up",
    "run": "lifecycle.cli.run",
    "worker": "lifecycle.cli.worker",
    "ingest": "lifecycle.cli.ingest",
    "capture": "lifecycle.cli.capture",
    "bench": "lifecycle.cli.bench",
    "matrix": "lifecycle.cli.matrix",
}
