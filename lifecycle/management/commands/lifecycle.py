"""``python manage.py lifecycle <subcommand>``: one entry point for every process and tool."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from lifecycle.cli import SUBCOMMANDS


class Command(BaseCommand):
    help = "Start the stack, run scenarios, ingest events, manage capture triggers, benchmark."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name, module_path in SUBCOMMANDS.items():
            try:
                module = importlib.import_module(module_path)
            except ModuleNotFoundError as exc:
                if exc.name != module_path:
                    raise
                continue  # not built yet
            sub = subparsers.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
            module.add_arguments(sub)
            sub.set_defaults(_module=module)

    def handle(self, *args: Any, **options: Any) -> None:
        module = options.pop("_module")
        code = module.handle(self, options)
        if code:
            sys.exit(code)
