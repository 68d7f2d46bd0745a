"""Drop the events older than an age: whole weeks' partitions, and the default partition's rows.

lifecycle prune --older-than 30d [--dry-run]

Exits 0 when done, 1 when a partition was left in place because its lock was not granted in
time (run it again), 2 on a bad --older-than.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="how old an event must be to go: 30d, 12h, 90m, 2w (a week's partition goes once"
        " its whole week is that old, so up to a week more is kept; the default partition's"
        " older rows are deleted)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would go, and change nothing"
    )


def handle(command: Any, options: dict[str, Any]) -> int:
    from lifecycle.store import retention

    try:
        age = retention.parse_age(options["older_than"])
    except ValueError as exc:
        command.stderr.write(f"prune: --older-than: {exc}")
        return 2
    result = retention.prune(age, dry_run=options["dry_run"])
    for line in result.lines():
        command.stdout.write(line)
    return 1 if result.busy else 0
