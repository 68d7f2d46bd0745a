"""The scenario probe: submits a task over HTTP and polls it, exactly like an end-to-end test.

Every response is recorded as a ``probe`` event (time sent, time received, status seen) and
the run gets its verdict: ``pass`` when the final status seen is the expected one.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    models,
    transaction,
)
from django.utils import timezone as dj_timezone

from lifecycle.events import MAX_TASK_KEY
from lifecycle.models import Event, Run
from lifecycle.runtime.http import LAB_KEY_HEADER, lab_key
from lifecycle.scenarios.catalogue import (
    MAX_SETTLE,
    MAX_TIMEOUT,
    Scenario,
    dig,
    find_scenario,
    get_scenario,
)
from lifecycle.scenarios.exchange import Response, http_json, storable, utcnow
from lifecycle.statuses import MAX_STATUS

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Who polls a run (``Run.follower``): this process, told apart from its predecessor on
# the same pid.
ME = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
HEARTBEAT = 2.0  # seconds between a poller's "still here" (Run.followed_at)
ORPHAN_AFTER = 10.0  # a run whose poller has been quiet this long is adopted
DB_PATIENCE = 300.0  # how long a poller waits out an unreachable database

Progress = Callable[[Run, str | None], None]


def status_of(scenario: Scenario, response: Response) -> str | None:
    """The status a response gives, at the scenario's path (None: none there, or not text)."""
    try:
        status = dig(response.body, scenario.status_path)
    except KeyError:
        return None
    if isinstance(status, bool) or not isinstance(status, str | int):
        return None
    return storable(str(status)[:MAX_STATUS])  # a NUL or a lone surrogate: U+FFFD


def _record(
    run: Run,
    kind: str,
    task_key: str,
    response: Response | None,
    status: str | None = None,
    **extra: Any,
) -> None:
    body: dict[str, Any] = {"run": run.id, **extra}
    at = utcnow()
    if response is not None:
        at = response.sent_at
        body.update(
            sent_at=response.sent_at.isoformat(),
            received_at=response.received_at.isoformat(),
            http_status=response.http_status,
            latency_ms=round((response.received_at - response.sent_at).total_seconds() * 1000, 2),
        )
        if response.headers:
            body["headers"] = response.headers
    # Its uuid is chosen here: an insert that committed just before the connection was lost
    # is not stored again by the retry (the uuid with its time is unique).
    event = Event(
        uuid=uuid.uuid4(),
        task_key=task_key,
        source=Event.Source.PROBE,
        kind=kind,
        status=status,
        at=at,
        body=body,
    )
    _db(lambda: Event.objects.bulk_create([event], ignore_conflicts=True))


def _db(work: Callable[[], T], patience: float = DB_PATIENCE) -> T:
    """Do ``work`` on Django's database, waiting out a restart of PostgreSQL: a lost
    connection is closed and the work retried (with backoff) until ``patience`` runs out.
    ``work`` must be safe to repeat: each is one statement or one atomic block."""
    deadline, delay = time.monotonic() + patience, 0.2
    while True:
        try:
            return work()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline or connection.in_atomic_block:
                raise
            logger.warning(
                "probe: database unavailable (%s); retrying in %.1fs",
                str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                delay,
            )
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


_SCENARIO_BODY: Any = object()  # create_run's default: no edited body


class Unavailable(ValueError):
    """The scenario cannot run here (``Scenario.unavailable`` says why and what fixes it)."""


def create_run(
    scenario: Scenario,
    base_url: str,
    resubmit_of: Run | None = None,
    request_token: str | None = None,
    body: Any = _SCENARIO_BODY,
    started_by: str = "",
) -> Run:
    """A run of the scenario, with its body: ``body`` (an edit's), else the one of the run it
    resubmits, else the scenario's; ``started_by`` says who asked. Unavailable when the
    scenario needs what this installation lacks (a standby)."""
    if scenario.unavailable:
        raise Unavailable(f"scenario {scenario.name} is unavailable: {scenario.unavailable}")
    if body is _SCENARIO_BODY:
        body = resubmit_of.body if resubmit_of is not None else scenario.body
    return Run.objects.create(
        scenario=scenario.name,
        expected=scenario.expected,
        base_url=base_url.rstrip("/"),
        body=body,
        resubmit_of=resubmit_of,
        request_token=request_token,
        started_by=started_by[:200],
    )


def _headers(run: Run, url: str) -> tuple[tuple[str, str], ...]:
    """The scenario's headers, and the lab's key for a request to the lab: to LAB_BASE_URL,
    or the run's base URL (LAB_BASE_URL's, or the command line's ``--base-url``; never a
    request's). No other service sees the key."""
    headers = get_scenario(run.scenario).headers
    for base in {settings.LAB_BASE_URL.rstrip("/"), run.base_url.rstrip("/")}:
        if base and url.startswith(base + "/"):
            return (*headers, (LAB_KEY_HEADER, lab_key()))
    return headers


def submit(run: Run, progress: Progress | None = None) -> bool:
    """Send the scenario's task; record the response. False (and the run done) on failure."""
    scenario = get_scenario(run.scenario)
    url = scenario.submit_to(run.base_url)
    try:
        headers = _headers(run, url)
        submitted = _beating(
            run, lambda: http_json(scenario.method, url, run.body, _client(run), headers)
        )
        if not 200 <= submitted.http_status < 300:
            error = submitted.body.get("error") or submitted.body.get("detail") or ""
            raise RuntimeError(f"it answered {submitted.http_status} {str(error)[:200]}".rstrip())
        try:
            key = dig(submitted.body, scenario.key_path)
        except KeyError:
            raise RuntimeError(f"its answer has no task key at {scenario.key_path!r}") from None
        if isinstance(key, bool) or not isinstance(key, str | int) or not str(key):
            raise RuntimeError(f"its answer's {scenario.key_path!r} is not a task key: {key!r}")
        task_key = scenario.task_key(str(key))
        if len(task_key) > MAX_TASK_KEY:
            raise RuntimeError(
                f"its task key is {len(task_key)} characters; events hold at most {MAX_TASK_KEY}"
            )
        if storable(task_key) != task_key:  # PostgreSQL stores no text that holds one
            what = "a NUL character" if "\x00" in task_key else "a lone surrogate"
            raise RuntimeError(f"its task key {task_key!r} holds {what}")
    except Exception as exc:
        logger.warning("run %s (%s) could not submit: %s", run.id, run.scenario, exc)
        # the service's own words may be in it (an answer's error, a bad status line)
        run.error = storable(f"could not submit the task to {url}: {exc}")
        _finish(run, None)
        return False
    # Only while the run is still this process's: one whose submit outlasted ORPHAN_AFTER
    # (a database outage) may have been closed by an adopter meanwhile, and its verdict
    # stands (``close_keyless``).
    stored = _db(
        lambda: Run.objects.filter(
            pk=run.pk, state=Run.State.RUNNING, follower__in=[ME, ""]
        ).update(task_key=task_key, followed_at=dj_timezone.now())
    )
    if not stored:
        logger.warning(
            "run %s (%s): submitted as task %r after another process had closed it; leaving it",
            run.id,
            run.scenario,
            task_key,
        )
        run.refresh_from_db()
        return False
    run.task_key = task_key
    status = status_of(scenario, submitted)
    _record(run, "submit", run.task_key, submitted, status)
    if progress:
        progress(run, status)
    return True


def poll_to_verdict(run: Run, progress: Progress | None = None) -> Run:
    """Poll the submitted task until it is terminal and settled, or the timeout; judge.

    The timeout counts from the run's start, so a run adopted from a process that died
    (``adopt_orphans``) keeps its deadline. Every ``HEARTBEAT`` it says it is still
    polling; if another process has taken the run over meanwhile (this one was thought
    dead: a long pause), it stops without a verdict, which is the other's to give.
    """
    scenario = get_scenario(run.scenario)
    assert run.task_key
    url = scenario.poll_at(run.base_url, run.task_key)
    observed: str | None = None
    try:
        elapsed = (dj_timezone.now() - run.started_at).total_seconds() if run.started_at else 0
        deadline = time.monotonic() + scenario.timeout - max(0.0, elapsed)
        settled_at: float | None = None  # when the current terminal status was first seen
        while True:
            try:
                response = http_json("GET", url, None, _client(run), _headers(run, url))
            except (OSError, http.client.HTTPException) as exc:
                # The service is restarting, say: an unanswered poll is a fact, not the end.
                error = storable(f"no answer: {exc}"[:300])  # the service's bytes may be in it
                _record(run, "read", run.task_key, None, None, error=error)
                status = None
            else:
                status = status_of(scenario, response) if response.http_status == 200 else None
                _record(run, "read", run.task_key, response, status)
            if status != observed and progress:
                progress(run, status)
            if scenario.lifecycle.is_terminal(status):
                if status != observed or settled_at is None:
                    settled_at = time.monotonic()
                if time.monotonic() - settled_at >= scenario.settle:
                    observed = status
                    break
            else:
                settled_at = None
            observed = status
            if time.monotonic() >= deadline + (scenario.settle if settled_at else 0):
                break
            if not _pause(run, scenario.poll_interval):
                logger.warning("run %s was adopted by another process; leaving it", run.id)
                return run
    except Exception as exc:  # the probe reports a broken system, it does not crash on it
        logger.warning("run %s (%s) could not finish: %s", run.id, run.scenario, exc)
        run.error = storable(str(exc))
    _finish(run, observed)
    if progress:
        progress(run, None)
    return run


def _client(run: Run) -> str:
    return f"probe-run-{run.id}"


def _still_mine(run: Run) -> bool:
    """Renew this process's claim on the run; False if another process holds it now."""
    return bool(
        _db(
            lambda: Run.objects.filter(
                pk=run.pk, state=Run.State.RUNNING, follower__in=[ME, ""]
            ).update(follower=ME, followed_at=dj_timezone.now())
        )
    )


def _beating(run: Run, work: Callable[[], T]) -> T:
    """``work`` (a request to the service: no database) in a helper thread while this one
    renews the run's claim every ``HEARTBEAT``: a service slow to answer a submit is not
    taken for a dead submitter (``close_keyless``)."""
    with ThreadPoolExecutor(1, thread_name_prefix=f"probe-submit-{run.pk}") as pool:
        answer = pool.submit(work)
        # wait(), not result(timeout=): the request's own timeout is a TimeoutError too
        while not wait([answer], timeout=HEARTBEAT).done:
            _still_mine(run)
        return answer.result()


def _pause(run: Run, seconds: float) -> bool:
    """Sleep between two polls, renewing the claim every ``HEARTBEAT`` (a poll interval may
    be a minute); False if another process took the run over meanwhile."""
    end = time.monotonic() + seconds
    while True:
        if time.monotonic() - _last_beat.get(run.pk, 0.0) >= HEARTBEAT:
            if not _still_mine(run):
                return False
            _last_beat[run.pk] = time.monotonic()
        remaining = end - time.monotonic()
        if remaining <= 0:
            return True
        time.sleep(min(remaining, HEARTBEAT))


_last_beat: dict[int, float] = {}  # run id -> when this process last renewed its claim


def claim(run: Run) -> None:
    """This process polls the run from now on."""
    _db(lambda: Run.objects.filter(pk=run.pk).update(follower=ME, followed_at=dj_timezone.now()))
    run.follower = ME


def _finish(run: Run, observed: str | None) -> None:
    run.observed = observed
    run.verdict = Run.Verdict.PASS if observed == run.expected else Run.Verdict.FAIL
    run.state = Run.State.DONE
    run.finished_at = dj_timezone.now()

    def save() -> bool:
        with transaction.atomic():
            # Only while the run is this process's (or nobody's): a poller that was taken
            # for dead and adopted leaves the verdict to the adopter.
            mine = Run.objects.filter(
                pk=run.pk, state=Run.State.RUNNING, follower__in=[ME, ""]
            ).update(
                observed=run.observed,
                verdict=run.verdict,
                state=run.state,
                finished_at=run.finished_at,
                error=run.error,
            )
            if not mine:
                return False
            if run.task_key:
                _record(
                    run,
                    "verdict",
                    run.task_key,
                    None,
                    expected=run.expected,
                    observed=observed,
                    verdict=run.verdict,
                    error=run.error,
                )
            return True

    if not _db(save):  # another process's run now: what it holds, not what this one found
        _db(run.refresh_from_db)


def execute(run: Run, progress: Progress | None = None) -> Run:
    """Submit and poll to the verdict in this thread (the CLI's way)."""
    claim(run)
    if submit(run, progress):
        poll_to_verdict(run, progress)
    return run


def start(
    scenario: Scenario,
    resubmit_of: Run | None = None,
    request_token: str | None = None,
    body: Any = _SCENARIO_BODY,
    started_by: str = "",
) -> Run:
    """Create a run, submit its task now, and poll it to its verdict in a background thread.

    Its relative URLs go to ``LAB_BASE_URL``, the web server's own address by default, and
    never to one a request names (its Host header): the probe goes only where the settings
    and the scenario's file say. With a ``request_token`` (the form's), a run is started
    once per token: the second click of a double click lands on the run the first one
    started.
    """
    if request_token:
        existing = Run.objects.filter(request_token=request_token).first()
        if existing:
            return existing
    try:
        run = create_run(
            scenario,
            settings.LAB_BASE_URL,
            resubmit_of,
            request_token=request_token,
            body=body,
            started_by=started_by,
        )
    except IntegrityError:  # the other click of a double click won the race
        return Run.objects.get(request_token=request_token)
    claim(run)
    if submit(run):
        poll_in_background(run)
    return run


# How long past its scenario's timeout and settle time a run may stay "running" before it
# is taken for abandoned (the process polling it stopped: a restart, a crash).
ABANDON_AFTER = 60.0


def expire_if_abandoned(run: Run) -> Run:
    """Close a run nobody polls any more, so it does not read "running" forever."""
    if run.state != Run.State.RUNNING or run.started_at is None:
        return run
    scenario = find_scenario(run.scenario)
    if scenario is None:  # no longer in the scenario files: the longest a run may take
        limit = MAX_TIMEOUT + MAX_SETTLE + ABANDON_AFTER
    else:
        limit = scenario.timeout + scenario.settle + ABANDON_AFTER
    if (dj_timezone.now() - run.started_at).total_seconds() < limit:
        return run
    if run.followed_at and (dj_timezone.now() - run.followed_at).total_seconds() < ORPHAN_AFTER:
        return run  # its poller is alive (it waited out the database, say)
    run.error = (
        f"abandoned: still running {limit:.0f} s after it started; the process following "
        "it stopped (a restart or a crash) before its verdict"
    )
    updated = Run.objects.filter(pk=run.pk, state=Run.State.RUNNING).update(
        state=Run.State.DONE,
        verdict=Run.Verdict.FAIL,
        finished_at=dj_timezone.now(),
        error=run.error,
    )
    if updated:
        run.state, run.verdict = Run.State.DONE, Run.Verdict.FAIL
    else:
        run.refresh_from_db()  # its poller finished after all
    return run


KEYLESS_ERROR = (
    "could not submit the task: the process submitting it stopped (a restart or a crash)"
    " before the service's answer was recorded, so the run does not know the task's key;"
    " the service may have taken the task"
)


def close_keyless(now: datetime | None = None) -> list[int]:
    """Close every run whose submitter went quiet before it learnt the task's key (its web
    process was killed mid-submit): there is nothing to poll, so its verdict is a failed
    submit's, at once, not "abandoned" minutes later. Each with one conditional update
    on the follower and its last beat, as ``adopt_orphans`` claims."""
    now = now or dj_timezone.now()
    quiet = now - timedelta(seconds=ORPHAN_AFTER)
    closed = []
    candidates = (
        Run.objects.filter(state=Run.State.RUNNING, task_key__isnull=True)
        .exclude(pk__in=list(_polling))
        .filter(
            models.Q(followed_at__lt=quiet)
            | models.Q(followed_at__isnull=True, started_at__lt=quiet)
        )
        .order_by("id")
        .values_list("id", "follower", "followed_at")[:100]
    )
    for run_id, follower, followed_at in list(candidates):
        if Run.objects.filter(
            pk=run_id,
            state=Run.State.RUNNING,
            task_key__isnull=True,
            follower=follower,
            followed_at=followed_at,
        ).update(
            state=Run.State.DONE,
            verdict=Run.Verdict.FAIL,
            observed=None,
            finished_at=now,
            error=KEYLESS_ERROR,
        ):
            logger.warning(
                "run %s: closed, its submitter (%s) stopped before the task's key came back",
                run_id,
                follower or "a process that never claimed it",
            )
            closed.append(run_id)
    return closed


def adopt_orphans(now: datetime | None = None) -> list[Run]:
    """Poll, from this process, every submitted run whose poller went quiet (the web
    process that started it was restarted or killed): it gets its true verdict, not
    "abandoned". Each run is claimed with one conditional update, so two web processes
    adopting at once never both poll it. A run whose submitter died before it learnt the
    task's key is closed instead (``close_keyless``)."""
    now = now or dj_timezone.now()
    close_keyless(now)
    quiet = now - timedelta(seconds=ORPHAN_AFTER)
    candidates = list(
        Run.objects.filter(state=Run.State.RUNNING, task_key__isnull=False)
        .exclude(pk__in=list(_polling))
        .filter(
            models.Q(followed_at__lt=quiet)
            | models.Q(followed_at__isnull=True, started_at__lt=quiet)
        )
        .order_by("id")[:100]
    )
    adopted = []
    for run in candidates:
        if find_scenario(run.scenario) is None:
            continue  # its scenario file is gone: expire_if_abandoned will close it
        taken = Run.objects.filter(
            pk=run.pk, state=Run.State.RUNNING, follower=run.follower, followed_at=run.followed_at
        ).update(follower=ME, followed_at=now)
        if taken:
            logger.info(
                "run %s (%s): adopted from %s",
                run.id,
                run.scenario,
                run.follower or "a process that never claimed it",
            )
            run.follower, run.followed_at = ME, now
            poll_in_background(run)
            adopted.append(run)
    return adopted


def adopt_forever(stop: threading.Event, every: float = 5.0) -> None:
    """``adopt_orphans`` every few seconds until ``stop`` (a web process's thread)."""
    while not stop.is_set():
        try:
            adopt_orphans()
        except Exception as exc:  # the database may be restarting: try again later
            logger.warning("adopting orphaned runs failed (%s); retrying", exc)
        finally:
            close_old_connections()
            connection.close()
        stop.wait(every)


def start_adopting() -> threading.Thread:
    """Start this process's adopter thread (the web process does at start)."""
    thread = threading.Thread(
        target=adopt_forever, args=(threading.Event(),), name="probe-adopter", daemon=True
    )
    thread.start()
    return thread


_polling: set[int] = set()  # runs a thread of this process polls now


def poll_in_background(run: Run) -> threading.Thread:
    """Poll a run to its verdict in a daemon thread of this process (the web server's, for
    the UI/API)."""

    def target() -> None:
        try:
            poll_to_verdict(run)
        finally:
            _polling.discard(run.pk)
            _last_beat.pop(run.pk, None)
            close_old_connections()
            connection.close()

    _polling.add(run.pk)

    thread = threading.Thread(target=target, name=f"probe-run-{run.id}", daemon=True)
    thread.start()
    return thread
