"""``make test``: the suite as three pytest processes side by side, so that one's waits (a
stack starting, a fault's outage, a browser's page) overlap the others' work.

- ``acceptance+browser`` runs ``tests/browser`` and ``tests/acceptance`` in the caller's
  environment (the RabbitMQ namespace ``lifecycle-test`` and pytest-django's test
  database, unless set);
- ``unit+integration`` runs ``tests/unit`` and ``tests/integration`` but the files of
  ``SECOND_INTEGRATION``, in a namespace and a test database of its own (the first's,
  ``-b`` and ``_b`` after);
- ``integration-2`` runs those files, in its own (``-c``, ``_c``): no shard sees another's
  queues, events or tables.

Every line each prints is shown as it comes, after its shard's name; the options given
(``python -m tests.shards -x -k chaos``) go to each. The exit status is the first failing
shard's (a shard that collected nothing, as ``-k`` may leave one, is not a failure unless
all did). A hot standby for the replica tests (``tests/standby.py``) is started once
before the three, when none runs and one can be made, and stopped after: the shards'
fixtures then all reuse it instead of racing to make one.

One file or folder runs as usual: ``.venv/bin/python -m pytest tests/unit``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NO_TESTS = 5  # pytest's exit status when it collected nothing


# The integration tests that wait the most (a web process, a relay, an ingestor or a
# proxy of their own, exports of thousands of events), run beside the others: alone on this
# machine they take about half of tests/integration's 520 s, and the pytest process that
# runs them is busy a third of that time.
SECOND_INTEGRATION = (
    "tests/integration/test_attack_slow_reader.py",
    "tests/integration/test_capture_hostile.py",
    "tests/integration/test_consumers.py",
    "tests/integration/test_election.py",
    "tests/integration/test_ingest.py",
    "tests/integration/test_long_timeline.py",
    "tests/integration/test_publisher_attack.py",
    "tests/integration/test_publisher_busy.py",
    "tests/integration/test_timeline_export.py",
    "tests/integration/test_watched.py",
)


def shards(env: dict[str, str]) -> list[tuple[str, list[str], dict[str, str]]]:
    """Each shard's name, pytest arguments (its folders and files, and ``--ignore`` of the
    files another runs) and environment, from the caller's environment."""
    namespace = env.get("LIFECYCLE_NAMESPACE") or "lifecycle-test"
    database = env.get("TEST_DATABASE_NAME") or f"test_{_database_name(env)}"

    def own(suffix: str) -> dict[str, str]:
        # PostgreSQL's names are at most 63 bytes
        return {
            "LIFECYCLE_NAMESPACE": f"{namespace}-{suffix}",
            "TEST_DATABASE_NAME": f"{database[:61]}_{suffix}",
        }

    return [
        # The browser's tests first: the acceptance tests' attached services wait for their
        # environments (``tests/venvs.py``, built from PyPI as the session begins).
        ("acceptance+browser", ["tests/browser", "tests/acceptance"], {}),
        (
            "unit+integration",
            ["tests/unit", "tests/integration", *(f"--ignore={f}" for f in SECOND_INTEGRATION)],
            own("b"),
        ),
        ("integration-2", list(SECOND_INTEGRATION), own("c")),
    ]


def _database_name(env: dict[str, str]) -> str:
    """The database ``DATABASE_URL`` names, as the settings read it (default ``lifecycle``)."""
    from urllib.parse import unquote, urlsplit

    path = urlsplit(env.get("DATABASE_URL") or "").path.lstrip("/")
    return unquote(path) or "lifecycle"


@contextmanager
def standby_for_all() -> Iterator[None]:
    """A standby started here if none runs (stopped after); if it cannot be, nothing: each
    shard's fixture then says why, skipping locally and failing in CI."""
    made = False
    try:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
        import django

        import tests.envdefaults  # noqa: F401  (the namespace, as the shards get it)

        django.setup()
        from lifecycle.runtime import standby as standbys

        where = standbys.configured()
        if not standbys.running(where):
            standbys.start(where)
            made = True
    except Exception as exc:  # no PostgreSQL, not root, no pg_basebackup: the fixture tells
        print(f"shards: no standby started beforehand ({exc})", flush=True)
    try:
        yield
    finally:
        if made:
            try:
                standbys.stop(where)
            except Exception as exc:
                print(f"shards: the standby could not be stopped ({exc})", flush=True)


def _pump(name: str, process: subprocess.Popen[str], lock: threading.Lock) -> None:
    """A shard's lines to ours; read to the end even if ours is gone (``| head``), so that
    the shard never blocks on a full pipe."""
    assert process.stdout is not None
    shown = True
    for line in process.stdout:
        if not shown:
            continue
        with lock:
            try:
                sys.stdout.write(f"{name} | {line}")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                shown = False


def run(options: list[str]) -> int:
    began = time.monotonic()
    lock = threading.Lock()
    running: list[tuple[str, subprocess.Popen[str], threading.Thread]] = []
    with standby_for_all():
        for name, folders, extra in shards(dict(os.environ)):
            process = subprocess.Popen(
                [sys.executable, "-m", "pytest", *folders, *options],
                cwd=ROOT,
                env={**os.environ, **extra},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            pump = threading.Thread(target=_pump, args=(name, process, lock), daemon=True)
            pump.start()
            running.append((name, process, pump))
        statuses = []
        try:
            for name, process, pump in running:
                statuses.append((name, process.wait()))
                pump.join()
        except KeyboardInterrupt:  # Ctrl-C reached the shards too (one process group)
            for _, process, _ in running:
                process.wait()
            return 130
    try:
        print(f"shards: done in {time.monotonic() - began:.0f} s", flush=True)
        for name, status in statuses:
            print(f"shards: {name} exited with {status}", flush=True)
    except BrokenPipeError:  # ours is gone (``| head``): the status still tells
        pass
    return outcome([status for _, status in statuses])


def outcome(statuses: list[int]) -> int:
    """The suite's exit status from its shards': the first failure's; a shard that collected
    nothing (``-k`` may leave one empty) fails only if every shard did."""
    failed = [status for status in statuses if status not in (0, NO_TESTS)]
    if failed:
        return failed[0]
    if statuses and all(status == NO_TESTS for status in statuses):
        return NO_TESTS
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
