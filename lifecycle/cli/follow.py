"""Copy every watched application database's captured changes into the event table.

One node of a deployment follows at a time (lifecycle/nodes/election.py): on the others this
process stands by until the holder is gone. Stops on SIGTERM or SIGINT, and at once when
it loses the role; what is not copied yet stays in each outbox for the next holder.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

logger = logging.getLogger("lifecycle.capture.follower")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reload-every", type=float, default=3.0, help="seconds between reads of the watch list"
    )


def handle(command: Any, options: dict[str, Any]) -> int | None:
    from lifecycle.capture.follower import follow_all
    from lifecycle.nodes import election
    from lifecycle.runtime.database import conninfo

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        logger.info("follow: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lead = election.lead("follow", stop, on_lost=lambda reason: stop.set())
    if lead is None:
        return None
    try:
        follow_all(
            conninfo(application_name="lifecycle-follow"),
            stop,
            reload_every=options["reload_every"],
        )
    finally:
        lead.release()
    return 3 if lead.lost else None
