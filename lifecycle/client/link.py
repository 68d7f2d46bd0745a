"""Publishing through a helper process, the handing side: a busy Dramatiq worker pays an
append per event.

A worker process is bound by its GIL: every microsecond of Python the publisher spends in
it (encoding, pika's frames, its event loop, and the switches between its thread and the
worker threads) is a microsecond the worker's own threads wait. So in a Dramatiq worker
process (``LIFECYCLE_RELAY=auto``, the default), or wherever ``LIFECYCLE_RELAY=process``,
the publisher's thread does not talk to RabbitMQ: it hands what the callers buffered to a
child process, the relay (``lifecycle.client.relay``), through a pipe, what gathered over
``LIFECYCLE_PUBLISH_LINGER`` (20 ms) as one frame. The relay encodes the events, sends each
frame as it comes (no linger of its own: an event waits for one linger, not two) with the
same ``Publisher`` (batches, confirms pipelined, reconnects, ``gap`` events) and reports
back what RabbitMQ confirmed.

What does not change for the caller: ``publish``, ``emit``, ``wait``, ``flush``, ``close``
and ``stats`` mean what they mean in the thread (``LIFECYCLE_RELAY=thread``); an event
still counts as held until RabbitMQ confirmed it; the buffer's bounds are the same. An
event's uuid is derived from a random prefix of the handing process and its ticket, so an
event handed again (the relay died before it said it was confirmed: a new relay is
started and given everything unconfirmed) is the same event, and the store keeps it once.

The pipe carries ``marshal`` frames (``>I`` length, then the data), never pickles: the
relay runs no code of what it reads. Down (handing process to relay):

- ``("e", urgent, entries)``: events, each ``(ticket, message)`` as the callers left them
  (an ``emit``'s parts, or a schema-1 dict); ``urgent``: tickets up to it are awaited
  (``entries`` empty: a ``wait`` or ``flush`` for events handed already);
- ``("g", gaps)``: events the handing process dropped (buffer full), per task and source,
  for the relay's ``gap`` events: ``(task, source, count, first_at, last_at, reasons)``;
- ``("c", seconds)``: the handing process closes; the relay flushes for at most that long
  once its input ends (without it, for the whole ``LIFECYCLE_SHUTDOWN_FLUSH``: the
  handing process died).

Up (relay to handing process): ``("r", pid)`` once it is ready, then ``("s", upto, lost,
published, failed, dropped, gaps_sent, connected, busy, gaps_got)`` whenever that changes,
and every ``REPORT_EVERY`` seconds regardless (a heartbeat: a relay holding events that is
silent for ``SILENT_FOR`` seconds is taken for stopped or hung, killed and replaced): every
ticket up to ``upto`` is done (confirmed, or lost: ``lost`` lists those it had to drop),
the counts so far, whether it holds a channel, whether it still has anything to send, and
how many ``g`` frames it has read (those are told once it is no longer busy; until then
the handing process keeps them, for the next relay if this one dies).

The relay ignores SIGINT, SIGTERM and SIGHUP (a terminal's Ctrl-C or a service manager
stopping the whole group must not take the events with it): it ends when its input ends,
once it has flushed (``LIFECYCLE_SHUTDOWN_FLUSH``, and at most ``UNREACHABLE_GIVE_UP``
seconds without RabbitMQ). If it cannot be started (an interpreter that is not Python,
say uWSGI's), the publisher logs why and sends from its own thread instead.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import itertools
import json
import logging
import marshal
import os
import select
import struct
import subprocess
import sys
import threading
import time
from bisect import bisect_right
from operator import itemgetter
from pathlib import Path
from typing import Any

from lifecycle.client import config, messages

# An event as the callers left it (``lifecycle.client.publisher``): its ticket, its message.
Entry = tuple[int, Any]
_ticket = itemgetter(0)

logger = logging.getLogger(__name__)

MODES = ("auto", "process", "thread")
READY_WITHIN = 15.0  # seconds a new relay has to say it is ready
START_TRIES = 3  # relays that failed to start in a row before the thread takes over
RESTART_PAUSE = 0.5  # seconds before starting another relay (doubling, at most 5)
MAX_FRAME = 256 * 1024 * 1024  # bytes: a longer length is a broken pipe, not a frame
FRAME_EVENTS = 500  # events handed in one frame at most (the relay's batch)
GAPS_KEPT = 64  # gap frames kept for a next relay before they are merged into one
PIPE_SIZE = 1024 * 1024  # bytes asked of the kernel for each pipe (F_SETPIPE_SZ)
REPORT_EVERY = 0.25  # seconds between two reports when nothing changed (a heartbeat)
SILENT_FOR = 5.0  # seconds without a report from a relay holding events: stopped or hung
SETTINGS_VARIABLE = "LIFECYCLE_RELAY_SETTINGS"
RELAY_GRACE = 5.0  # seconds a relay left to flush may run past its allowance before a kill
_HEADER = struct.Struct(">I")
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

# Set by the Dramatiq middleware in a worker process (``before_worker_boot``): where
# ``auto`` hands events to a relay.
in_worker = False


def wanted() -> bool:
    """Whether a publisher starting its thread in this process should use a relay:
    ``LIFECYCLE_RELAY`` (``auto``: in a Dramatiq worker process; ``process``; ``thread``)."""
    mode = (config.setting("LIFECYCLE_RELAY") or "auto").strip().lower()
    if mode not in MODES:
        logger.warning(
            "lifecycle publisher: LIFECYCLE_RELAY=%r is not one of %s; using auto",
            mode,
            ", ".join(MODES),
        )
        mode = "auto"
    return mode == "process" or (mode == "auto" and in_worker)


def frame(data: Any) -> bytes:
    payload = marshal.dumps(data)
    return _HEADER.pack(len(payload)) + payload


def frames(buffer: bytearray) -> list[Any]:
    """The whole frames at the head of ``buffer``, taken out of it."""
    found = []
    at = 0
    while len(buffer) - at >= 4:
        (size,) = _HEADER.unpack_from(buffer, at)
        if size > MAX_FRAME:
            raise ValueError(f"a frame of {size} bytes")
        if len(buffer) - at - 4 < size:
            break
        found.append(marshal.loads(bytes(buffer[at + 4 : at + 4 + size])))
        at += 4 + size
    del buffer[:at]
    return found


def _widen(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # above /proc/sys/fs/pipe-max-size, or not Linux: the default will do
        pass


class Link:
    """The handing side: the publisher's thread, its relay process and their pipes."""

    def __init__(self, publisher: Any) -> None:  # a Publisher, which imports this module
        self.publisher = publisher
        self.head = messages.uuid_head()  # the uuids of the events it hands: head + ticket
        self.sent: collections.deque[Entry] = collections.deque()  # handed, not yet done
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.started_at = 0.0
        self.out = bytearray()  # frames not yet written to the relay
        self.into = bytearray()  # bytes read from the relay, not yet a whole frame
        self.forwarded = 0  # the highest awaited ticket told to the relay
        self.gathering_since: float | None = None  # when the buffer's oldest event came
        self.counts = (0, 0, 0, 0)  # this relay's published, failed, dropped, gaps sent
        self.busy = False  # the relay still has something to send (events or gaps)
        self.failures = 0  # relays that failed to start, in a row
        self.heard = 0.0  # when the relay last wrote (its heartbeat: every REPORT_EVERY)
        # Gaps handed to this relay and not yet known told, each with its number (the
        # relay's count of gap frames it read): handed again to the next relay if it dies.
        self.gaps_handed: list[tuple[int, list[Any]]] = []
        self.gaps_seq = 0
        self.next_start = 0.0

    # -- any thread -------------------------------------------------------------------------

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"w")
        except OSError:  # full (it will wake anyway) or closed (it has ended)
            pass

    def forget(self) -> None:
        """In a forked child: the parent's pipes are the parent's (its relay must see its
        input end when the parent closes it, not when every child has also ended)."""
        self._close_pipes()
        process, self.process = self.process, None
        for pipe in (process.stdin, process.stdout) if process is not None else ():
            try:
                if pipe is not None:
                    pipe.close()  # closed once, as a file: no later close of a reused number
            except OSError:
                pass

    # -- the publisher's thread ---------------------------------------------------------------

    def serve(self) -> bool:
        """Hand events to a relay until the publisher stops: True; False if no relay could
        be started (the caller then sends from this thread itself)."""
        publisher = self.publisher
        try:
            while True:
                try:
                    if self.process is None:
                        if self.failures >= START_TRIES:
                            return False
                        if publisher._stopping:
                            return True
                        if time.monotonic() >= self.next_start:
                            self._start()
                    if self.process is None:
                        self._sleep(max(0.0, self.next_start - time.monotonic()))
                        continue
                    if publisher._stopping and self.ready:
                        self._stop()
                        return True
                    self._select(self._round())
                except Exception as exc:  # the thread must outlive anything: never deaf
                    publisher._warn("the relay link failed (%r); going on", exc)
                    self._sleep(0.1)
        finally:
            # The wake pipe stays open while the link lives (another thread may be writing
            # to it right now: a number closed here could be reused by another file).
            self._drain_wake()

    def _select(self, timeout: float | None) -> None:
        process = self.process
        assert process is not None and process.stdin and process.stdout
        readers = [self.wake_r, process.stdout.fileno()]
        writers = [process.stdin.fileno()] if self.out else []
        if not self.ready:
            left = max(0.0, self.started_at + READY_WITHIN - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        elif self.sent:  # a relay holding events must keep talking: look again in time
            timeout = SILENT_FOR if timeout is None else min(timeout, SILENT_FOR)
        try:
            readable, writable, _ = select.select(readers, writers, [], timeout)
        except InterruptedError:
            return
        if self.wake_r in readable:
            self._drain_wake()
        if writable:
            self._write()
        if self.process is not None and process.stdout.fileno() in readable:
            self._read()
        if self.process is not None and not self.ready:
            if time.monotonic() >= self.started_at + READY_WITHIN:
                self._failed_start(f"it did not say it was ready within {READY_WITHIN:g}s")
        elif self.process is not None and self.sent:
            if time.monotonic() - self.heard >= SILENT_FOR:  # stopped (SIGSTOP) or hung
                self._lost_relay(f"it said nothing for {SILENT_FOR:g}s")

    def _sleep(self, seconds: float) -> None:
        try:
            readable, _, _ = select.select([self.wake_r], [], [], seconds)
        except InterruptedError:
            return
        if readable:
            self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except OSError:
            pass

    def _start(self) -> bool:
        """Start a relay; False if it could not be started at all."""
        settings = {**self.publisher._relay_settings(), "head": self.head, "pid": os.getpid()}
        env = dict(os.environ)
        env[SETTINGS_VARIABLE] = json.dumps(settings)
        # The relay runs this very client: from a checkout, its root comes first (never an
        # installed one's site-packages, which must not go before the standard library).
        root = str(Path(__file__).resolve().parents[2])
        if root not in _site_dirs():
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.pop("DJANGO_SETTINGS_MODULE", None)  # what it needs is in its settings above
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", "from lifecycle.client.relay import main; main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
                bufsize=0,
            )
        except Exception as exc:  # no interpreter, no processes or descriptors left
            self._failed_start(f"it could not be started ({exc!r})")
            return False
        assert process.stdin and process.stdout
        for pipe in (process.stdin, process.stdout):
            _widen(pipe.fileno())
            os.set_blocking(pipe.fileno(), False)
        self.process, self.ready, self.started_at = process, False, time.monotonic()
        self.heard = self.started_at
        self.out.clear()
        self.into.clear()
        self.counts, self.busy, self.forwarded = (0, 0, 0, 0), False, 0
        self.gaps_seq = 0
        return True

    def _failed_start(self, why: str) -> None:
        self.failures += 1
        self._end_process()
        self.next_start = time.monotonic() + min(RESTART_PAUSE * 2 ** (self.failures - 1), 5.0)
        if self.failures >= START_TRIES:
            self.publisher._warn_now(
                "cannot start the relay process (%s, %d times); sending from this process",
                why,
                self.failures,
            )
        else:
            self.publisher._warn("cannot start the relay process (%s); trying again", why)

    def _end_process(self) -> None:
        process, self.process, self.ready = self.process, None, False
        if process is None:
            return
        for pipe in (process.stdin, process.stdout):
            try:
                if pipe:
                    pipe.close()
            except OSError:
                pass
        try:
            process.wait(0.5)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(2)
            except subprocess.TimeoutExpired:
                pass
        with self.publisher._lock:
            self.publisher._connected = False
            self.busy = False
            self.publisher._changed.notify_all()

    def _round(self) -> float | None:
        """Hand over what is due; the seconds until the next thing is due (None: until
        woken)."""
        publisher = self.publisher
        if not self.ready:
            return 0.5
        now = time.monotonic()
        with publisher._lock:
            publisher._absorb()
            buffer = publisher._buffer
            urgent = publisher._urgent
            if not buffer:
                taken = None
                if not (publisher._gaps or publisher._unattributed):
                    publisher._idle = True  # the next publish wakes this thread
                    if publisher._lane:  # noted as it went idle (``_note``): look again
                        publisher._idle = False
                        return 0.0
            else:
                if self.gathering_since is None:
                    self.gathering_since = now
                due = (
                    publisher._stopping
                    or len(buffer) >= FRAME_EVENTS
                    or (urgent > self.forwarded and buffer[0][0] <= urgent)
                    or now - self.gathering_since >= publisher.linger
                )
                if not due:
                    return self.gathering_since + publisher.linger - now
                taken, publisher._buffer = buffer, collections.deque()
            gaps = None
            if publisher._gaps or publisher._unattributed:
                gaps, publisher._gaps = publisher._gaps, {}
                unattributed, publisher._unattributed = publisher._unattributed, 0
        publisher._warn_dropped()
        if taken:
            self.gathering_since = None
            self._hand(list(taken), urgent)
        elif urgent > self.forwarded and self.sent and self.sent[0][0] <= urgent:
            # Awaited events the relay holds already: it sends them without its linger.
            self.forwarded = urgent
            self.out += frame(("e", urgent, []))
            self._write()
        if gaps is not None:
            if unattributed:
                publisher._warn_now(
                    "%d dropped events belonged to no task that could be told", unattributed
                )
            told = [
                (task, source, gap.count, gap.first_at, gap.last_at, gap.reasons)
                for (task, source), gap in gaps.items()
            ]
            if told:
                self._hand_gaps(told)
        # Once something was handed, look again at once: an empty buffer then lets the next
        # publish wake this thread (``_idle``).
        return 0.0 if taken or gaps is not None else None

    def _hand(self, entries: list[Entry], urgent: int) -> None:
        """Frame ``entries`` for the relay, and keep them until it says they are done."""
        data, entries = self._framed(urgent, entries)
        if not entries:
            return
        self.forwarded = max(self.forwarded, urgent)
        with self.publisher._lock:  # ``close`` may read them from another thread
            self.sent.extend(entries)
        self.out += data
        self._write()

    def _framed(self, urgent: int, entries: list[Entry]) -> tuple[bytearray, list[Entry]]:
        """``entries`` as ``e`` frames the relay takes (at most FRAME_EVENTS events and
        MAX_FRAME bytes each: a longer frame ends the relay, and the next, for ever), and
        the entries they carry; one marshal cannot carry goes as the thread would encode
        it, one that cannot be encoded or is larger than a frame is dropped."""
        data = bytearray()
        kept: list[Entry] = []
        chunks = [entries[i : i + FRAME_EVENTS] for i in range(0, len(entries), FRAME_EVENTS)]
        chunks.reverse()
        while chunks:
            chunk = chunks.pop()
            try:
                framed = frame(("e", urgent, chunk))
            except ValueError:  # a body marshal cannot carry: as the thread would encode it
                if len(chunk) > 1:
                    chunks += [chunk[len(chunk) // 2 :], chunk[: len(chunk) // 2]]
                    continue
                portable = self.publisher._portable(chunk[0])
                if portable is None:
                    self._unencodable(chunk[0])
                    continue
                chunk = [portable]
                framed = frame(("e", urgent, chunk))
            if len(framed) - _HEADER.size > MAX_FRAME:
                if len(chunk) > 1:
                    chunks += [chunk[len(chunk) // 2 :], chunk[: len(chunk) // 2]]
                    continue
                self._unencodable(
                    chunk[0], f"the event was larger than the relay takes ({MAX_FRAME} bytes)"
                )
                continue
            data += framed
            kept += chunk
        return data, kept

    def _hand_gaps(self, told: list[Any]) -> None:
        self.gaps_seq += 1
        self.gaps_handed.append((self.gaps_seq, told))
        self.out += frame(("g", told))
        if len(self.gaps_handed) > GAPS_KEPT:  # a relay busy for long: kept as one, bounded
            merged: dict[tuple[str, str], list[Any]] = {}
            for _, each in self.gaps_handed:
                for task, source, count, first_at, last_at, reasons in each:
                    known = merged.get((task, source))
                    if known is None:
                        merged[(task, source)] = [task, source, count, first_at, last_at, reasons]
                    else:
                        known[2] += count
                        known[3], known[4] = min(known[3], first_at), max(known[4], last_at)
                        known[5] = list(dict.fromkeys([*known[5], *reasons]))
            self.gaps_handed = [(self.gaps_seq, [tuple(gap) for gap in merged.values()])]

    def give_back_gaps(self) -> None:
        """Gaps handed to relays and not known told: the publisher's again (no relay)."""
        handed, self.gaps_handed = self.gaps_handed, []
        self.publisher._told_gaps([gap for _, told in handed for gap in told], start=False)

    def _unencodable(
        self, entry: Entry, cause: str = "the publisher could not encode the event"
    ) -> None:
        self.publisher._drop_handed(entry, cause)

    def _write(self) -> None:
        process = self.process
        if not self.out or process is None or process.stdin is None:
            return
        try:
            written = os.write(process.stdin.fileno(), self.out)
        except BlockingIOError:
            return
        except OSError as exc:  # EPIPE: it ended; its output's end says so next
            if exc.errno != errno.EPIPE:
                self._lost_relay(f"writing to it failed ({exc!r})")
            return
        del self.out[:written]

    def _read(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        try:
            chunk = os.read(process.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost_relay(f"reading from it failed ({exc!r})")
            return
        if not chunk:
            self._lost_relay("it ended")
            return
        self.heard = time.monotonic()
        self.into += chunk
        try:
            found = frames(self.into)
        except Exception as exc:
            self._lost_relay(f"it wrote something that is not a frame ({exc!r})")
            return
        for data in found:
            if data[0] == "r":
                self.ready = True
                self.failures = 0
                if self.sent:  # what the last relay had not confirmed: the same events
                    self.out += self._framed(self.forwarded, list(self.sent))[0]
                handed, self.gaps_handed = self.gaps_handed, []
                for _, told in handed:  # and the gaps it may not have told
                    self._hand_gaps(told)
                self._write()
            elif data[0] == "s":
                self._status(*data[1:])

    def _status(
        self,
        upto: int,
        lost: list[int],
        published: int,
        failed: int,
        dropped: int,
        gaps_sent: int,
        connected: bool,
        busy: bool,
        gaps_got: int = 0,
    ) -> None:
        publisher, sent = self.publisher, self.sent
        if not busy and self.gaps_handed:  # the gaps it had read are told
            self.gaps_handed = [(n, told) for n, told in self.gaps_handed if n > gaps_got]
        before = self.counts
        self.counts = (published, failed, dropped, gaps_sent)
        with publisher._lock:
            done = 0
            if lost:  # dropped by the relay (its byte limit): no longer held here either
                publisher._lost.extend(lost)
                gone = set(lost)
                kept = [entry for entry in sent if entry[0] not in gone]
                done = len(sent) - len(kept)
                sent = self.sent = collections.deque(kept)
            if sent:  # the events done: a rising run of tickets, cut at ``upto`` at once
                cut = len(sent) if sent[-1][0] <= upto else bisect_right(sent, upto, key=_ticket)
                if cut == len(sent):
                    sent.clear()
                elif cut > len(sent) // 2:  # the fewer events moved: those kept
                    sent = self.sent = collections.deque(itertools.islice(sent, cut, None))
                else:  # or those released (a big buffer, a small report: no copy of it)
                    for _ in range(cut):
                        sent.popleft()
                done += cut
            publisher._held -= done
            publisher._published += published - before[0]
            publisher._failed += failed - before[1]
            publisher._dropped += dropped - before[2]
            publisher._gaps_sent += gaps_sent - before[3]
            publisher._connected = connected
            self.busy = busy
            if sent:
                lowest = sent[0][0]
            elif publisher._buffer:
                lowest = publisher._buffer[0][0]
            else:
                lowest = publisher._last_ticket + 1
            publisher._confirmed = lowest - 1
            publisher._changed.notify_all()

    def _lost_relay(self, why: str) -> None:
        """The relay ended or broke: another is started, and given what it had not done."""
        process = self.process
        if not self.ready:  # it never got going: a start that failed
            self._failed_start(f"{why} before it was ready")
            return
        code = process.poll() if process is not None else None
        self._end_process()
        self.publisher._warn(
            "the relay process stopped (%s, exit code %s); starting another, which sends "
            "again the %d events it had not confirmed",
            why,
            code,
            len(self.sent),
        )
        self.next_start = time.monotonic() + RESTART_PAUSE

    def _stop(self) -> None:
        """Hand over the rest, end the relay's input, and read its reports until it ends or
        ``close``'s time is up (then it goes on flushing on its own, within its bounds)."""
        publisher = self.publisher
        self._round()
        deadline = publisher._stop_by
        process = self.process
        while self.out and self.process is not None and time.monotonic() < deadline:
            self._select(min(0.1, max(0.0, deadline - time.monotonic())))
        process = self.process
        if process is None:
            return
        assert process.stdin is not None
        try:  # the relay flushes for what is left of ``close``'s time, not its own allowance
            left = max(0.0, deadline - time.monotonic())
            _write_all(process.stdin.fileno(), frame(("c", left)), deadline)
        except OSError:
            pass
        try:
            process.stdin.close()
        except OSError:
            pass
        while self.process is not None and time.monotonic() < deadline:
            stdout = process.stdout
            assert stdout is not None
            try:
                readable, _, _ = select.select([stdout.fileno()], [], [], 0.1)
            except InterruptedError:
                continue
            if readable:
                try:
                    chunk = os.read(stdout.fileno(), 1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.into += chunk
                try:
                    for data in frames(self.into):
                        if data[0] == "s":
                            self._status(*data[1:])
                except Exception:
                    break
        if process.poll() is not None or time.monotonic() < deadline:
            self._end_process()
        else:  # still flushing: left to end on its own (its input is closed)
            self.process = None
            stdout = process.stdout
            if stdout is not None:
                stdout.close()
            _reap(process, max(0.0, deadline - time.monotonic()) + RELAY_GRACE)

    def _close_pipes(self) -> None:
        """In a forked child only, where no other thread of this process runs."""
        fds, self.wake_r, self.wake_w = (self.wake_r, self.wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _reap(process: subprocess.Popen[bytes], within: float) -> None:
    """Wait for a relay left to flush on its own (no zombie once it ends), and kill it if
    it has not ended ``within`` seconds (stopped or hung: no orphan outlives its allowance).
    While this process lives; once it exits, the relay is init's to reap."""

    def run() -> None:
        try:
            process.wait(within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    try:
        threading.Thread(target=run, name="lifecycle-relay-reaper", daemon=True).start()
    except RuntimeError:  # interpreter shutdown: the process ends, init reaps it
        pass


def _site_dirs() -> set[str]:
    import site

    try:
        found = [*site.getsitepackages(), site.getusersitepackages()]
    except AttributeError:  # a virtualenv of old without them
        found = []
    return {str(Path(d).resolve()) for d in found}


def _write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write all of ``data`` (to a blocking or non-blocking pipe), by ``deadline`` if given."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("the pipe stayed full") from None
            select.select([], [fd], [], left)
            continue
        view = view[written:]
