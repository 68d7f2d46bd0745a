"""Keep every task's stored findings current, and the event table's partitions and
retention (the maintainer; ``lifecycle up`` starts it).

One node of a deployment maintains at a time (lifecycle/nodes/election.py): on the others this
process stands by until the holder is gone (``--once`` is not elected). Stops on SIGTERM
or SIGINT after the pass under way, and so when it loses the role.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

logger = logging.getLogger("lifecycle.check.maintainer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--poll", type=float, default=1.0, help="seconds between passes when nothing is notified"
    )
    parser.add_argument(
        "--once", action="store_true", help="make one pass (the first: every task) and exit"
    )


def handle(command: Any, options: dict[str, Any]) -> int | None:
    from lifecycle.check.maintainer import Maintainer
    from lifecycle.nodes import election

    maintainer = Maintainer(poll=options["poll"])
    if options["once"]:
        maintainer.once()
        command.stdout.write(
            f"checked {maintainer.stats.checked} tasks in {maintainer.stats.check_seconds:.1f}s"
        )
        return None

    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        logger.info("maintain: %s received, stopping", signal.Signals(signum).name)
        stopping.set()
        maintainer.stop()

    def lost(reason: str) -> None:
        stopping.set()
        maintainer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    lead = election.lead("maintain", stopping, on_lost=lost)
    if lead is None:
        return None
    try:
        logger.info("maintain: listening on the event table")
        maintainer.run()
    finally:
        lead.release()
    return 3 if lead.lost else None
