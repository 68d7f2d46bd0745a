"""Consume events from RabbitMQ into the event table (the ingestor).

Stops gracefully on SIGTERM or SIGINT: the current batch is stored and acked first.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

logger = logging.getLogger("lifecycle.ingest")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lifecycle.ingest import BATCH_EVENTS, METHODS, PREFETCH

    parser.add_argument(
        "--batch-size", type=int, default=BATCH_EVENTS, help="events per transaction, at most"
    )
    parser.add_argument(
        "--batch-ms", type=float, default=50, help="longest wait to fill a batch (ms)"
    )
    parser.add_argument(
        "--prefetch", type=int, default=PREFETCH, help="unacked messages RabbitMQ may send"
    )
    parser.add_argument("--method", choices=METHODS, default="copy", help="how a batch is inserted")
    parser.add_argument(
        "--log-every", type=float, default=60.0, help="seconds between summary lines"
    )


def handle(command: Any, options: dict[str, Any]) -> int | None:
    from lifecycle.ingest import Ingestor, ingest_queue_name

    ingestor = Ingestor(
        batch_size=options["batch_size"],
        batch_ms=options["batch_ms"],
        prefetch=options["prefetch"],
        method=options["method"],
        log_every=options["log_every"],
    )

    def stop(signum: int, frame: object) -> None:
        logger.info("ingest: %s received, finishing the current batch", signal.Signals(signum).name)
        ingestor.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("ingest: consuming %s", ingest_queue_name())
    ingestor.run()
    return None
