"""Subcommands of ``python manage.py lifecycle``: one module each, with ``add_arguments``
and ``handle``, registered in ``SUBCOMMANDS`` by name. They use the engine, never the web."""

SUBCOMMANDS = {
    "up": "lifecycle.cli.up",
    "run": "lifecycle.cli.run",
    "worker": "lifecycle.cli.worker",
    "ingest": "lifecycle.cli.ingest",
    "capture": "lifecycle.cli.capture",
    "follow": "lifecycle.cli.follow",
    "maintain": "lifecycle.cli.maintain",
    "chaos": "lifecycle.cli.chaos",
    "prune": "lifecycle.cli.prune",
    "matrix": "lifecycle.cli.matrix",
    "scenarios": "lifecycle.cli.scenarios",
    "token": "lifecycle.cli.token",
    "user": "lifecycle.cli.user",
    "login": "lifecycle.cli.login",
    "status": "lifecycle.cli.status",
    "standby": "lifecycle.cli.standby",
}
