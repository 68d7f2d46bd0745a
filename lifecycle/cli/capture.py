"""Install, remove or list capture: in the inspector's own database, or in an application's.

lifecycle capture install TABLE --key COL --status COL [--database URL [--name NAME]]
                          [--key-prefix PREFIX] [--replace]
lifecycle capture remove TABLE [--database URL]
lifecycle capture remove --all --database URL
lifecycle capture list
"""

from __future__ import annotations

import argparse
from typing import Any

EXIT_REFUSED = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="watch a table: capture every committed change")
    install.add_argument("table", help="table name, optionally schema-qualified (schema.table)")
    install.add_argument("--key", required=True, help="column holding the task key")
    install.add_argument("--status", required=True, help="column holding the task status")
    install.add_argument(
        "--database",
        metavar="URL",
        help="the application's database (default: the inspector's own, DATABASE_URL)",
    )
    install.add_argument("--name", help="how the timeline names that database (dbname@host:port)")
    install.add_argument(
        "--replace", action="store_true", help="reinstall if the trigger is already there"
    )
    install.add_argument(
        "--key-prefix",
        default="",
        metavar="PREFIX",
        help="put before every key of this table (with --database; the client's "
        "LIFECYCLE_KEY_PREFIX must be the same), so that two applications' job 5 stay apart",
    )
    remove = actions.add_parser("remove", help="stop watching a table (or, with --all, a database)")
    remove.add_argument("table", nargs="?", help="table name, optionally schema-qualified")
    remove.add_argument("--database", metavar="URL", help="the application's database")
    remove.add_argument(
        "--all", action="store_true", help="every table of --database, and the capture schema"
    )
    actions.add_parser(
        "list", help="every watched table, with its events and the newest one's time"
    )


def handle(command: Any, options: dict[str, Any]) -> int | None:
    from lifecycle.capture import watching
    from lifecycle.capture.trigger import CaptureError

    out, action = command.stdout, options["action"]
    try:
        if action == "install":
            where, table = watching.install(
                options["table"],
                options["key"],
                options["status"],
                database=options["database"],
                name=options["name"],
                replace=options["replace"],
                key_prefix=options["key_prefix"],
            )
            prefix = f", keys prefixed {table.key_prefix!r}" if table.key_prefix else ""
            out.write(
                f"capturing changes of {table.name} in {where} "
                f"(key {table.key}, status {table.status}{prefix})"
            )
            if table.mode == "any":
                out.write(
                    "  with the generic function (not installed by a superuser, who alone may "
                    "create the event trigger that rebuilds a faster per-table function after "
                    "each migration); migrations never fail its writes either way"
                )
        elif action == "remove":
            if options["all"] == bool(options["table"]):
                command.stderr.write("capture remove: give a TABLE, or --all with --database")
                return EXIT_REFUSED
            if options["all"] and not options["database"]:
                command.stderr.write("capture remove --all: say which --database")
                return EXIT_REFUSED
            removed, cleaned = watching.remove(options["table"], database=options["database"])
            for where, table in removed:
                out.write(f"stopped capturing changes of {table.name} in {where}")
            if cleaned:
                out.write("dropped the schema lifecycle_capture: nothing of ours is left there")
        else:
            rows = watching.listing()
            if not rows:
                out.write("no table is watched")
            for row in rows:
                out.write(row.line())
    except CaptureError as exc:
        command.stderr.write(f"capture {action}: {exc}")
        return EXIT_REFUSED
    return None
