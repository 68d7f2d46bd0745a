"""A small process supervisor: start children, restart the ones that may die, stop them all.

Children run in their own process group, so Ctrl-C reaches only the supervisor, which then
stops them in order; each child also gets SIGTERM if the supervisor itself dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 10.0


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    restart: bool = False  # restart when it exits on its own (the worker may die on purpose)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.process = subprocess.Popen(
            list(self.argv),
            env={**os.environ, **self.env},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> int | None:
        return self.process.poll() if self.process else None

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the child's process group (its own children)."""
        if self.process:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def signal(self, signum: int) -> None:
        """Signal the child itself; it stops its own children (Dramatiq forwards SIGTERM to
        its worker processes, and a second SIGTERM from us would make it kill them)."""
        if self.process and self.process.poll() is None:
            try:
                os.kill(self.process.pid, signum)
            except ProcessLookupError:
                pass


class Supervisor:
    def __init__(self, children: Sequence[Child], log=print) -> None:
        self.children = list(children)
        self.log = log
        self.stopping = False

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def start(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for child in self.children:
            child.start()
            self.log(f"started {child.name} (pid {child.pid})")

    def watch(self) -> int:
        """Block until a signal asks to stop or a non-restartable child exits."""
        status = 0
        while not self.stopping:
            for child in self.children:
                code = child.exited()
                if code is None:
                    continue
                if child.restart:
                    child.kill_group()
                    child.restarts += 1
                    # A child that keeps crashing at once is not restarted in a tight loop.
                    delay = 0.0 if time.monotonic() - child.started_at > 5 else 1.0
                    self.log(f"{child.name} exited with status {code}; restarting")
                    time.sleep(delay)
                    child.start()
                    self.log(f"restarted {child.name} (pid {child.pid})")
                else:
                    self.log(f"{child.name} exited with status {code}; stopping everything")
                    status = code or 1
                    self.stopping = True
                    break
            time.sleep(0.1)
        self.stop()
        return status

    def stop(self) -> None:
        for child in reversed(self.children):
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in reversed(self.children):
            while child.exited() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.exited() is None:
                self.log(f"{child.name} did not stop in {STOP_TIMEOUT:g} s; killing it")
                child.kill_group()
                child.process.wait()  # type: ignore[union-attr]
        # Grandchildren (Dramatiq's worker processes) share their parent's process group.
        for child in self.children:
            child.kill_group()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
