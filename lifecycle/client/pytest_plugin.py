"""A pytest plugin for an application's own end-to-end tests: what the inspector saw of the
tasks a test watched goes into the test's report.

Installed with the client (a ``pytest11`` entry point; ``pip install "lifecycle-client[pytest]"``)
and active in every pytest run of that environment. It talks to the dashboard's JSON API over
HTTP and nothing else::

    def test_submit_task_and_expect_failure(lifecycle):
        job = requests.post(f"{API}/jobs", json={"mode": "swallowed_error"}).json()
        lifecycle.watch(job["id"], expect="errored")
        ...

``watch`` with ``expect`` records the expectation on the task's timeline (a ``probe.expect``
event), so the task's page, its live findings and the report all judge it by that status.
After the test, the plugin asks the dashboard for each watched task's timeline (waiting
until its events stop arriving) and adds a "lifecycle" section to the report: the
timeline's permalink and each finding's sentence, with a link to the events that prove it.
``--lifecycle-strict`` fails a test whose watched task has any finding, even when its own
assertions passed. An unreachable dashboard is reported in the section and as a warning;
it never fails a test.

Settings: ``--lifecycle-url`` (or ``LIFECYCLE_URL``, default ``http://127.0.0.1:8000``),
``LIFECYCLE_TOKEN`` (sent as ``Authorization: Bearer``), ``--lifecycle-settle`` (seconds
without a new event before the history is taken as complete, default 1), and
``--lifecycle-timeout`` (the longest wait for it, default 15). A watched key is the
application's own; the plugin puts ``LIFECYCLE_KEY_PREFIX`` before it, as every event the
client publishes does.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lifecycle.client import config
from lifecycle.client.config import redact_url
from lifecycle.client.messages import make_message

DEFAULT_URL = "http://127.0.0.1:8000"
HTTP_TIMEOUT = 5.0
SECTION = "lifecycle"
_KEY = pytest.StashKey["Lifecycle"]()


class LifecycleUnavailable(Exception):
    """The dashboard could not answer: the text says why."""


@dataclass
class Watched:
    """One task a test watches, and what the dashboard said of it once it settled."""

    task_key: str
    expect: str | None = None
    timeline: dict[str, Any] | None = None
    error: str | None = None

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list((self.timeline or {}).get("findings", []))


@dataclass
class Lifecycle:
    """The ``lifecycle`` fixture: ``watch`` the tasks a test starts."""

    url: str
    token: str | None = None
    settle: float = 1.0
    timeout: float = 15.0
    test: str = ""  # the test's node id, recorded with an expectation
    watched: list[Watched] = field(default_factory=list)

    def __repr__(self) -> str:
        # pytest prints a failing test's fixtures: the token must never reach a CI log.
        token = "'***'" if self.token else "None"
        return (
            f"Lifecycle(url={self.shown_url!r}, token={token}, "
            f"watched={[w.task_key for w in self.watched]!r})"
        )

    @property
    def shown_url(self) -> str:
        """The dashboard's address as reports show it: without a password."""
        return redact_url(self.url)

    def watch(self, task_key: object, expect: str | None = None) -> Watched:
        """Watch a task: after the test, its timeline and findings go into the report.
        ``expect`` is the final status the test expects; it lets the checker say where a
        wrong one was born (``expectation_mismatch``)."""
        if isinstance(task_key, bool) or not isinstance(task_key, str | int) or not task_key:
            raise TypeError(f"watch() takes a task key (str or int), not {task_key!r}")
        found = Watched(config.task_key(task_key), expect)
        self.watched.append(found)
        if expect is not None:
            self.record_expectation(found)
        return found

    def record_expectation(self, watched: Watched) -> None:
        """Put the test's expectation on the task's timeline (POST /api/events)."""
        event = make_message(
            source="probe",
            kind="expect",
            task=watched.task_key,
            status=watched.expect,
            body={"client": "pytest", "test": self.test},
        )
        try:
            self.request("POST", "/api/events", event)
        except LifecycleUnavailable as exc:
            watched.error = str(exc)

    def findings(self, task_key: object, expect: str | None = None) -> list[dict[str, Any]]:
        """A task's findings now, once its events settled (for an explicit assertion)."""
        watched = Watched(config.task_key(task_key), expect)
        self.settle_one(watched)
        if watched.error:
            raise LifecycleUnavailable(watched.error)
        return watched.findings

    # The dashboard's JSON API -----------------------------------------------------------

    def timeline_path(self, watched: Watched) -> str:
        key = urllib.parse.quote(watched.task_key, safe="")
        query = f"?{urllib.parse.urlencode({'expected': watched.expect})}" if watched.expect else ""
        return f"/api/tasks/{key}/timeline{query}"

    def request(self, method: str, path: str, payload: Any = None) -> dict[str, Any] | None:
        """One call of the JSON API; None for a 404."""
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            detail = exc.read(300).decode(errors="replace")
            raise LifecycleUnavailable(f"{self.shown_url} answered {exc.code}: {detail}") from None
        except Exception as exc:  # OSError, a bad URL (http.client.InvalidURL), bad JSON...
            # The message may quote the URL, password and all: say only what kind it was.
            shown = str(exc).replace(self.url, self.shown_url)
            if self.url != self.shown_url:
                shown = type(exc).__name__
            raise LifecycleUnavailable(f"{self.shown_url} could not be reached: {shown}") from None
        return body if isinstance(body, dict) else None

    def fetch(self, watched: Watched) -> dict[str, Any] | None:
        """The task's timeline; None while the dashboard has no event of it yet."""
        return self.request("GET", self.timeline_path(watched))

    def settle_one(self, watched: Watched) -> None:
        """Wait until the task's history stops growing for ``settle`` s (or ``timeout``)."""
        deadline = time.monotonic() + self.timeout
        last_count, steady_since = -1, time.monotonic()
        while True:
            try:
                body = self.fetch(watched)
            except LifecycleUnavailable as exc:
                watched.error = str(exc)
                return
            count = event_count(body) if body else 0
            now = time.monotonic()
            if count != last_count:
                last_count, steady_since = count, now
            if body is not None:
                watched.timeline = body
            if (body is not None and now - steady_since >= self.settle) or now >= deadline:
                if body is None:
                    watched.error = (
                        f"the dashboard at {self.shown_url} has no event of task "
                        f"{watched.task_key} after {self.timeout:g} s: is this application "
                        "attached to it?"
                    )
                return
            time.sleep(0.2)


def event_count(body: dict[str, Any]) -> int:
    """How many events a timeline answer counts: a long history's first page says its
    ``total`` (its findings and status are of the whole history, so no need to walk it)."""
    total = body.get("total")
    return total if isinstance(total, int) else len(body.get("events", []))


# A segment of ``~`` (none or more) then one or two dots, as dashboard.converters escapes
# them: a browser would resolve a raw ``..`` and open another page than the task's.
_DOTS = re.compile(r"(?:(?<=/)|^)(~*\.\.?)(?=/|$)")


def task_path(task_key: str) -> str:
    """The task page's path for a key (after ``/tasks/``), as the dashboard's own links."""
    return urllib.parse.quote(_DOTS.sub(r"~\1", task_key))


def report_text(lifecycle: Lifecycle, watched: list[Watched]) -> str:
    """The report section: per task, its permalink and every finding's sentence."""
    lines: list[str] = []
    for w in watched:
        body = w.timeline or {}
        page = body.get("url") or f"{lifecycle.shown_url}/tasks/{task_path(w.task_key)}"
        lines.append(f"task {w.task_key}: {page}")
        if w.error:
            lines.append(f"  the inspector could not tell: {w.error}")
            continue
        expect = f", expected {w.expect}" if w.expect else ""
        lines.append(f"  {event_count(body)} events; last status {body.get('status')}{expect}")
        if not w.findings:
            lines.append("  no finding")
        for f in w.findings:
            cause = f" ({f['cause']})" if f.get("cause") else ""
            lines.append(f"  {f['kind']}{cause}: {f['message']}")
            if f.get("fix"):
                lines.append(f"    fix: {str(f['fix'])[:300]}")
            if f.get("events"):
                lines.append(f"    the events that prove it: {page}#event-{f['events'][0]}")
    return "\n".join(lines)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lifecycle", "task lifecycle inspector")
    group.addoption(
        "--lifecycle-url",
        default=None,
        help=f"the dashboard's address (LIFECYCLE_URL, default {DEFAULT_URL})",
    )
    group.addoption(
        "--lifecycle-strict",
        action="store_true",
        default=False,
        help="fail a test whose watched task has any finding",
    )
    group.addoption(
        "--lifecycle-settle",
        type=float,
        default=1.0,
        help="seconds without a new event before a watched history counts as complete",
    )
    group.addoption(
        "--lifecycle-timeout",
        type=float,
        default=15.0,
        help="the longest wait for a watched task's history, in seconds",
    )


@pytest.fixture
def lifecycle(request: pytest.FixtureRequest) -> Iterator[Lifecycle]:
    """Watch the tasks this test starts: ``lifecycle.watch(task_key, expect="FAILED")``."""
    options = request.config
    url = options.getoption("lifecycle_url") or os.environ.get("LIFECYCLE_URL") or DEFAULT_URL
    found = Lifecycle(
        url=url.rstrip("/"),
        token=os.environ.get("LIFECYCLE_TOKEN") or None,
        settle=options.getoption("lifecycle_settle"),
        timeout=options.getoption("lifecycle_timeout"),
        test=request.node.nodeid,
    )
    request.node.stash[_KEY] = found
    yield found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    found = item.stash.get(_KEY, None)
    if report.when != "call" or found is None or not found.watched:
        return
    for watched in found.watched:
        if watched.timeline is None:
            watched.error = None
            found.settle_one(watched)
    text = report_text(found, found.watched)
    report.sections.append((SECTION, text))
    for watched in found.watched:
        if watched.error:
            warnings.warn(f"lifecycle: {watched.error}", stacklevel=1)
    strict = item.config.getoption("lifecycle_strict")
    with_findings = [w for w in found.watched if w.findings]
    if strict and report.passed and with_findings:
        report.outcome = "failed"
        report.longrepr = (
            "--lifecycle-strict: the inspector found "
            f"{sum(len(w.findings) for w in with_findings)} finding(s) in the watched tasks\n"
            + text
        )
