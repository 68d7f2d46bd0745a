#!/usr/bin/env python
"""Django's command-line utility for the lifecycle inspector."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    from django.core.management import execute_from_command_line

    from lifecycle.scenarios.catalogue import ScenarioFileError

    try:
        execute_from_command_line(sys.argv)
    except ScenarioFileError as exc:  # raised at start-up: one line, not a traceback
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
