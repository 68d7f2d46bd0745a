"""Keep every task's stored findings current, and the event table's partitions and
retention (the maintainer; ``lifecycle up`` starts it).

Stops on SIGTERM or SIGINT after the pass under way.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

logger = logging.getLogger("lifecycle.maintain")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--poll", type=float, default=1.0, help="seconds between passes when nothing is notified"
    )
    parser.add_argument(
        "--once", action="store_true", help="make one pass (the first: every task) and exit"
    )


def handle(command: Any, options: dict[str, Any]) -> int | None:
    from lifecycle.maintain import Maintainer

    maintainer = Maintainer(poll=options["poll"])
    if options["once"]:
        maintainer.once()
        command.stdout.write(
            f"checked {maintainer.stats.checked} tasks in {maintainer.stats.check_seconds:.1f}s"
        )
        return None

    def stop(signum: int, frame: object) -> None:
        logger.info("maintain: %s received, stopping", signal.Signals(signum).name)
        maintainer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("maintain: following the event table")
    maintainer.run()
    return None
