"""The relay process: ``python -c "from lifecycle.client.relay import main; main()"``,
started by a publisher that hands its events to it (``lifecycle.client.link``, which
describes the pipe between them and why).

It reads ``marshal`` frames on its standard input and publishes their events with a
``Publisher`` of its own (batches, confirms pipelined, reconnects, ``gap`` events), whose
uuids for an ``emit``'s events are the handing process's prefix and the event's ticket;
a reporter thread writes what is confirmed on its standard output, at every change and at
least every ``REPORT_EVERY`` seconds. It ignores SIGINT, SIGTERM and SIGHUP, and ends when
its input ends, once it has flushed for what is left of the handing process's ``close``
(a ``c`` frame) or, if the handing process died, for ``LIFECYCLE_SHUTDOWN_FLUSH``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from lifecycle.client.link import REPORT_EVERY, SETTINGS_VARIABLE, _write_all, frame, frames
from lifecycle.client.publisher import Publisher

logger = logging.getLogger(__name__)


class _Reporter(threading.Thread):
    """Writes a status frame whenever the publisher's state changes (and a heartbeat)."""

    def __init__(self, publisher: Publisher, out: int) -> None:
        super().__init__(name="lifecycle-relay-reporter", daemon=True)
        self.publisher, self.out = publisher, out
        self.reported_lost = 0
        self.last: tuple[Any, ...] | None = None
        self.sent_at = 0.0  # when it last wrote: at least every REPORT_EVERY (a heartbeat)
        self.gaps_got = 0  # gap frames read (under the publisher's lock, with the gaps kept)
        self.done = False

    def run(self) -> None:
        publisher = self.publisher
        while not self.done:
            with publisher._lock:
                state, lost = self._state()
                if state == self.last and not lost:  # checked under the lock: no change
                    publisher._changed.wait(REPORT_EVERY)  # is missed while it reports
                    state, lost = self._state()
            self._send(state, lost)

    def report(self) -> None:
        with self.publisher._lock:
            state, lost = self._state()
        self._send(state, lost)

    def _state(self) -> tuple[tuple[Any, ...], list[int]]:
        """Under the lock: what the handing process is told, and the tickets newly lost."""
        publisher = self.publisher
        lost = [t for t in publisher._lost if t > self.reported_lost]
        state = (
            publisher._confirmed_upto(),
            publisher._published,
            publisher._failed,
            publisher._dropped,
            publisher._gaps_sent,
            publisher._connected,
            bool(publisher._held or publisher._gaps or publisher._unattributed),
            self.gaps_got,
        )
        return state, lost

    def _send(self, state: tuple[Any, ...], lost: list[int]) -> None:
        now = time.monotonic()
        if state == self.last and not lost and now - self.sent_at < REPORT_EVERY:
            return
        self.sent_at = now
        if lost:
            self.reported_lost = lost[-1]
        self.last = state
        try:
            _write_all(self.out, frame(("s", state[0], lost, *state[1:])))
        except OSError:  # the handing process is gone: the input's end says so too
            self.done = True


def main() -> None:
    """The relay: read frames from stdin, publish them, report on stdout."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    settings = json.loads(os.environ.pop(SETTINGS_VARIABLE))
    os.environ["LIFECYCLE_PROCESS_ROLE"] = settings["role"]
    publisher = Publisher(
        url=settings["url"],
        namespace=settings["namespace"],
        max_events=2**62,  # the handing process bounds what it holds, and so what this holds
        max_bytes=settings["max_bytes"],
        # What it is handed gathered for the handing process's linger already (or is
        # awaited): sent as it comes, an event waits for one linger, not two.
        linger=0.0,
        connect_timeout=settings["connect_timeout"],
        max_backoff=settings["max_backoff"],
        relay=False,
    )
    publisher._uuid_head = settings["head"]
    publisher._reported_pid = settings["pid"]
    out, into = sys.stdout.fileno(), sys.stdin.fileno()
    sys.stdout = sys.stderr  # nothing else may write to the frames' pipe
    reporter = _Reporter(publisher, out)
    # Connected before the first event, as the handing process's own publisher would be
    # (``Publisher.start``: a worker's first messages must not wait for the connection).
    publisher.start()
    _write_all(out, frame(("r", os.getpid())))
    reporter.start()
    buffer = bytearray()
    allowance = float(settings["flush"])  # the handing process died: the whole allowance
    try:
        while True:
            chunk = os.read(into, 1 << 20)
            if not chunk:
                break
            buffer += chunk
            for data in frames(buffer):
                if data[0] == "e":
                    _, urgent, entries = data
                    publisher._append_handed(entries, urgent)
                elif data[0] == "g":
                    publisher._told_gaps(data[1])  # its thread started if no event came before
                    with publisher._lock:
                        reporter.gaps_got += 1
                elif data[0] == "c":  # the handing process closes: what is left of its time
                    allowance = min(allowance, max(0.0, float(data[1])))
    except Exception as exc:  # a broken frame: what was read so far is sent all the same
        logger.warning("lifecycle relay: its input broke (%r); flushing and ending", exc)
    publisher.close(allowance)
    reporter.done = True
    with publisher._lock:
        publisher._changed.notify_all()
    reporter.join(2 * REPORT_EVERY + 1.0)  # one writer: its last frame must not come after this
    reporter.report()


if __name__ == "__main__":
    main()
