"""Install, remove or list the capture trigger on any table.

lifecycle capture install TABLE --key COL --status COL [--replace]
lifecycle capture remove TABLE
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
        "--replace", action="store_true", help="reinstall if the trigger is already there"
    )
    remove = actions.add_parser("remove", help="stop watching a table")
    remove.add_argument("table", help="table name, optionally schema-qualified (schema.table)")
    actions.add_parser("list", help="show the watched tables with their key and status columns")


def handle(command: Any, options: dict[str, Any]) -> int | None:
    from lifecycle import capture

    action = options["action"]
    try:
        if action == "install":
            table = capture.install(
                options["table"], options["key"], options["status"], replace=options["replace"]
            )
            command.stdout.write(
                f"capturing changes of {table.name} (key {table.key}, status {table.status})"
            )
        elif action == "remove":
            table = capture.remove(options["table"])
            command.stdout.write(f"stopped capturing changes of {table.name}")
        else:
            tables = capture.watched()
            if not tables:
                command.stdout.write("no table is watched")
            for t in tables:
                notes = [] if t.enabled else ["disabled"]
                if t.missing_columns:
                    notes.append("missing column " + ", ".join(t.missing_columns))
                suffix = f"  ({'; '.join(notes)})" if notes else ""
                command.stdout.write(f"{t.name}  key={t.key}  status={t.status}{suffix}")
    except capture.CaptureError as exc:
        command.stderr.write(f"capture {action}: {exc}")
        return EXIT_REFUSED
    return None
