"""Scenarios: named recipes the probe runs like an end-to-end test, read from TOML files.

``LIFECYCLE_SCENARIOS`` names the files (several, separated by ``:``); the default is the
lab's own, ``lifecycle/lab/scenarios.toml``, which is read like any other. A file holds
``[[scenarios]]`` (how to submit a task and poll it, what it must end as, the findings a bug
must produce) and ``[lifecycles."schema.table"]`` (a captured table's statuses). The README's
"Scenario files" section describes every key.

``load`` reads and checks all of it, or raises ``ScenarioFileError`` naming the file, the
line and the reason: nothing is half-loaded. ``activate`` makes a catalogue the process's
(the dashboard's ``ready``, so a bad file stops every process at start-up).
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from lifecycle import statuses
from lifecycle.check.registry import CAUSES, KINDS
from lifecycle.statuses import Lifecycle, LifecycleError

LAB_FILE = Path(__file__).resolve().parents[1] / "lab" / "scenarios.toml"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
MAX_BODY = 64 * 1024  # bytes of a submitted JSON body, from a file or an edit
MAX_TIMEOUT, MAX_SETTLE = 3600.0, 600.0
MIN_POLL, MAX_POLL = 0.01, 60.0
MAX_KEY_PREFIX = 100  # characters, as capture install's --key-prefix
KEY = "{key}"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str) -> str:
    """``${NAME}`` replaced by the environment's NAME (URLs and header values may use it,
    so a file holds no secret and serves every deployment). KeyError names a missing one."""
    return VARIABLE.sub(lambda m: os.environ[m[1]], text)


def _expanded(text: str, key: str, fail: Any) -> str:
    try:
        return expand(text)
    except KeyError as exc:
        raise fail(
            key, f"{key} uses ${{{exc.args[0]}}}, which is not set in the environment"
        ) from None


class ScenarioFileError(ImproperlyConfigured):
    """A scenario file that cannot be used: where (file and line) and why."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}, line {line}" if line else self.path
        super().__init__(f"scenario file {where}: {reason}")


class BodyError(ValueError):
    """A JSON body that cannot be submitted (an edit's): the text says why."""


@dataclass(frozen=True)
class Expectation:
    """A finding a bug scenario must produce: its kind and, for kinds with causes, cause."""

    kind: str
    cause: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.cause}" if self.cause else self.kind

    def met_by(self, findings: Iterable[Any]) -> bool:
        return any(
            f.kind == self.kind and (self.cause is None or f.cause == self.cause) for f in findings
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expected: str
    lifecycle: Lifecycle
    submit_url: str  # absolute, or relative to the run's base URL
    key_path: str  # dotted path of the task key in the submit response
    poll_url: str  # with {key}
    status_path: str  # dotted path of the status in the poll response
    body: Any = None  # the JSON body submitted (None: no body)
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    table: str | None = None
    bug: str | None = None  # None for a clean scenario, else a short name of the bug
    findings: tuple[Expectation, ...] = ()  # what the checker must report for the bug
    timeout: float = 10.0  # seconds to wait for a terminal status
    settle: float = 1.0  # after a terminal status, keep polling this long: it must stay
    poll_interval: float = 0.1
    alone: bool = False  # the matrix runs it one at a time (it kills its worker)
    base_url: str | None = None  # the file's; None: LAB_BASE_URL, the dashboard's own
    group: str = ""  # the file's title
    # Put before the key of the submit's answer to make the inspector's task key, as
    # `capture install --key-prefix` and the client's LIFECYCLE_KEY_PREFIX do.
    key_prefix: str = ""
    source: str = field(default="", compare=False)  # the file it came from
    # (a setting it needs, the command that provides it): the lab's replica-read needs a
    # standby (LAB_REPLICA_URL, from `lifecycle standby start`).
    requires: tuple[str, str] | None = None

    @property
    def unavailable(self) -> str | None:
        """Why it cannot run here, with the command that fixes that; None when it can."""
        if self.requires is None:
            return None
        setting, command = self.requires
        if getattr(django_settings, setting, None) or os.environ.get(setting):
            return None
        return f"needs {setting}, which is not set: {command}".rstrip(": ")

    @property
    def clean(self) -> bool:
        return self.bug is None

    def resolve(self, url: str, base_url: str) -> str:
        if urllib.parse.urlsplit(url).scheme:
            return url
        return f"{(self.base_url or base_url).rstrip('/')}/{url.lstrip('/')}"

    def submit_to(self, base_url: str) -> str:
        return self.resolve(self.submit_url, base_url)

    def poll_at(self, base_url: str, key: str) -> str:
        """The poll URL of task ``key`` (the inspector's: the application's own key, after
        the scenario's ``key_prefix``, goes into the URL)."""
        own = self.application_key(key)
        return self.resolve(self.poll_url.replace(KEY, urllib.parse.quote(own, safe="")), base_url)

    def task_key(self, answered: str) -> str:
        """The inspector's key of the task whose application key the submit answered."""
        return f"{self.key_prefix}{answered}"

    def application_key(self, key: str) -> str:
        return key[len(self.key_prefix) :] if key.startswith(self.key_prefix) else key

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "group": self.group,
            "expected": self.expected,
            "clean": self.clean,
            "bug": self.bug,
            "findings": [str(f) for f in self.findings],
            "table": self.table,
            "submit": {
                "method": self.method,
                "url": self.submit_url,
                # Header values may be credentials: their names only.
                "headers": [name for name, _ in self.headers],
                "body": self.body,
                "key": self.key_path,
                "key_prefix": self.key_prefix,
            },
            "poll": {"url": self.poll_url, "status": self.status_path},
            "timeout": self.timeout,
            "settle": self.settle,
            "poll_interval": self.poll_interval,
            "unavailable": self.unavailable,
        }


@dataclass(frozen=True)
class Catalogue:
    scenarios: dict[str, Scenario]
    lifecycles: dict[str, Lifecycle]
    files: tuple[str, ...]


class UnknownScenario(KeyError):
    def __str__(self) -> str:
        known = ", ".join(active().scenarios) or "none"
        return f"unknown scenario {self.args[0]!r}; known: {known}"


# Loading ------------------------------------------------------------------------------


def paths_of(setting: str) -> list[Path]:
    """The files a ``LIFECYCLE_SCENARIOS`` value names (``:``-separated; blanks ignored)."""
    return [Path(p).expanduser() for p in setting.split(os.pathsep) if p.strip()]


def load(paths: Iterable[str | Path]) -> Catalogue:
    """Read and check every file; the first problem raises ScenarioFileError."""
    parsed: list[tuple[Path, dict[str, Any], _Lines]] = []
    all_lifecycles: dict[str, Lifecycle] = {}
    where_lifecycle: dict[str, Path] = {}
    for given in paths:
        path = Path(given)
        data, lines = _read(path)
        parsed.append((path, data, lines))
        for table, lc in _lifecycles(path, data, lines).items():
            if table in all_lifecycles:
                raise ScenarioFileError(
                    path,
                    lines.section("lifecycles", table),
                    f"the lifecycle of {table} is declared twice "
                    f"(also in {where_lifecycle[table]})",
                )
            all_lifecycles[table], where_lifecycle[table] = lc, path
    scenarios: dict[str, Scenario] = {}
    for path, data, lines in parsed:
        for scenario in _scenarios(path, data, lines, all_lifecycles):
            if scenario.name in scenarios:
                index = [s.get("name") for s in data.get("scenarios", [])].index(scenario.name)
                raise ScenarioFileError(
                    path,
                    lines.entry(index, "name"),
                    f"scenario {scenario.name!r} is declared twice "
                    f"(also in {scenarios[scenario.name].source})",
                )
            scenarios[scenario.name] = scenario
    return Catalogue(scenarios, all_lifecycles, tuple(str(p) for p, _, _ in parsed))


def _read(path: str | Path) -> tuple[dict[str, Any], _Lines]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ScenarioFileError(path, None, f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioFileError(path, line, "is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)$", message)
        at = int(found[1]) if found else None
        reason = message[: found.start()].strip() if found else message
        raise ScenarioFileError(path, at, f"is not valid TOML: {reason}") from None
    lines = _Lines(text)
    known = {"title", "base_url", "defaults", "scenarios", "lifecycles"}
    for key in data:
        if key not in known:
            raise ScenarioFileError(
                path, lines.top(key), f"unknown key {key!r}; known: {', '.join(sorted(known))}"
            )
    return data, lines


def _lifecycles(path: Path | str, data: dict[str, Any], lines: _Lines) -> dict[str, Lifecycle]:
    tables = data.get("lifecycles", {})
    if not isinstance(tables, dict):
        raise ScenarioFileError(path, lines.top("lifecycles"), "lifecycles must be a table")
    found = {}
    for name, table in tables.items():
        line = lines.section("lifecycles", name)
        if not isinstance(table, dict):
            raise ScenarioFileError(path, line, f"lifecycles.{name} must be a table")
        try:
            found[statuses.table_name(name)] = Lifecycle.parse(table)
        except LifecycleError as exc:
            raise ScenarioFileError(
                path, lines.key_after(line, exc.key), f"the lifecycle of {name}: {exc}"
            ) from None
    return found


SCENARIO_KEYS = {
    "name",
    "description",
    "expect",
    "table",
    "bug",
    "findings",
    "timeout",
    "settle",
    "poll_interval",
    "alone",
    "requires",
    "submit",
    "poll",
}
REQUIRES_KEYS = {"setting", "command"}
SUBMIT_KEYS = {"method", "url", "headers", "body", "key", "key_prefix"}
POLL_KEYS = {"url", "status"}


def _scenarios(
    path: Path | str, data: dict[str, Any], lines: _Lines, tables: Mapping[str, Lifecycle]
) -> Iterable[Scenario]:
    title = data.get("title", Path(path).stem)
    if not isinstance(title, str):
        raise ScenarioFileError(path, lines.top("title"), "title must be a string")
    base_url = data.get("base_url")
    if base_url is not None:
        line = lines.top("base_url")
        if isinstance(base_url, str):
            base_url = _expanded(
                base_url, "base_url", lambda _, reason: ScenarioFileError(path, line, reason)
            )
        if not isinstance(base_url, str) or not _is_http(base_url):
            raise ScenarioFileError(path, line, "base_url must be an http:// or https:// URL")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ScenarioFileError(path, lines.top("defaults"), "defaults must be a table")
    entries = data.get("scenarios", [])
    if not isinstance(entries, list):
        raise ScenarioFileError(path, lines.top("scenarios"), "scenarios must be [[scenarios]]")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ScenarioFileError(path, lines.entry(index, None), "each scenario is a table")
        merged = _merge(defaults, entry)

        def fail(
            key: str | None, reason: str, index: int = index, entry: Any = entry
        ) -> ScenarioFileError:
            line = None
            if key and _has(entry, key):
                line = lines.entry(index, key)
            elif key and _has(defaults, key):
                line = lines.key_after(lines.section("defaults"), key.split(".")[0])
            elif key:
                line = lines.entry(index, key.split(".")[0])
            name = entry.get("name") if isinstance(entry.get("name"), str) else f"#{index + 1}"
            return ScenarioFileError(
                path, line or lines.entry(index, None), f"scenario {name}: {reason}"
            )

        yield _scenario(merged, fail, tables, base_url, title, str(path))


def _has(table: Any, key: str) -> bool:
    try:
        dig(table, key)
    except KeyError:
        return False
    return True


def _merge(defaults: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in entry.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _scenario(
    s: dict[str, Any],
    fail: Any,
    tables: Mapping[str, Lifecycle],
    base_url: str | None,
    group: str,
    source: str,
) -> Scenario:
    for key in s:
        if key not in SCENARIO_KEYS:
            raise fail(key, f"unknown key {key!r}; known: {', '.join(sorted(SCENARIO_KEYS))}")
    name = s.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise fail(
            "name",
            "name must be 1 to 64 characters of lowercase letters, digits, - and _, "
            "starting with a letter or digit",
        )
    description = s.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "description must be a string")
    table = s.get("table")
    if table is not None and (not isinstance(table, str) or not table.strip()):
        raise fail("table", "table must name a captured table, such as public.jobs")
    table = statuses.table_name(table) if table else None
    lifecycle = tables.get(table, statuses.DEFAULT) if table else statuses.DEFAULT
    expected = s.get("expect")
    if not isinstance(expected, str) or not lifecycle.is_terminal(expected):
        terminal = ", ".join(s for s in lifecycle.statuses if lifecycle.is_terminal(s))
        raise fail(
            "expect",
            f"expect must be a terminal status of {table or 'the default'} lifecycle "
            f"({terminal}), not {expected!r}",
        )
    bug = s.get("bug")
    if bug is not None and (not isinstance(bug, str) or not NAME.match(bug)):
        raise fail("bug", "bug must be a short name (letters, digits, - and _)")
    findings = _findings(s.get("findings", []), fail)
    if bug and not findings:
        raise fail("findings", "a bug scenario must name the findings it produces")
    if not bug and findings:
        raise fail(
            "findings", "a clean scenario must produce no finding: give it a bug, or no findings"
        )
    timeout = _number(s, "timeout", 10.0, 0.1, MAX_TIMEOUT, fail)
    settle = _number(s, "settle", 1.0, 0.0, MAX_SETTLE, fail)
    poll_interval = _number(s, "poll_interval", 0.1, MIN_POLL, MAX_POLL, fail)
    alone = s.get("alone", False)
    if not isinstance(alone, bool):
        raise fail("alone", "alone must be true or false")
    requires = s.get("requires")
    if requires is not None:
        if (
            not isinstance(requires, dict)
            or set(requires) - REQUIRES_KEYS
            or not isinstance(requires.get("setting"), str)
            or not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", requires["setting"])
            or not isinstance(requires.get("command", ""), str)
            or len(requires.get("command", "")) > 200
        ):
            raise fail(
                "requires",
                'requires must be a table like { setting = "LAB_REPLICA_URL", command = '
                '"python manage.py lifecycle standby start" } (an upper-case setting name, '
                "and a command of at most 200 characters)",
            )
        requires = (requires["setting"], requires.get("command", ""))

    submit = s.get("submit")
    if not isinstance(submit, dict):
        raise fail("submit", "submit must be a table with url and key")
    for key in submit:
        if key not in SUBMIT_KEYS:
            raise fail(
                f"submit.{key}",
                f"unknown key submit.{key}; known: {', '.join(sorted(SUBMIT_KEYS))}",
            )
    method = submit.get("method", "POST")
    if method not in METHODS:
        raise fail("submit.method", f"submit.method must be one of {', '.join(METHODS)}")
    submit_url = _url(submit.get("url"), "submit.url", fail, base_url)
    key_path = _path(submit.get("key"), "submit.key", fail)
    key_prefix = submit.get("key_prefix", "")
    # Without NUL, as capture install's: PostgreSQL could store no task key holding one.
    if not isinstance(key_prefix, str) or len(key_prefix) > MAX_KEY_PREFIX or "\x00" in key_prefix:
        raise fail(
            "submit.key_prefix",
            f"submit.key_prefix must be a string of at most {MAX_KEY_PREFIX} characters, "
            "without NUL (capture install's --key-prefix)",
        )
    headers = _headers(submit.get("headers", {}), fail)
    body = submit.get("body")
    try:
        check_body(body)
    except BodyError as exc:
        raise fail("submit.body", f"submit.body: {exc}") from None

    poll = s.get("poll")
    if not isinstance(poll, dict):
        raise fail("poll", "poll must be a table with url and status")
    for key in poll:
        if key not in POLL_KEYS:
            raise fail(f"poll.{key}", f"unknown key poll.{key}; known: url, status")
    poll_url = _url(poll.get("url"), "poll.url", fail, base_url)
    if poll_url.count(KEY) != 1 or re.search(r"\{(?!key\})", poll_url):
        raise fail("poll.url", "poll.url must hold {key} once (the task key), and no other {…}")
    status_path = _path(poll.get("status"), "poll.status", fail)
    return Scenario(
        name=name,
        description=description,
        expected=expected,
        lifecycle=lifecycle,
        submit_url=submit_url,
        key_path=key_path,
        poll_url=poll_url,
        status_path=status_path,
        body=body,
        method=method,
        headers=headers,
        table=table,
        bug=bug,
        findings=findings,
        timeout=timeout,
        settle=settle,
        poll_interval=poll_interval,
        alone=alone,
        base_url=base_url.rstrip("/") if base_url else None,
        group=group,
        source=source,
        key_prefix=key_prefix,
        requires=requires,
    )


def _findings(value: Any, fail: Any) -> tuple[Expectation, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail("findings", 'findings must be a list like ["stale_read:cached_object", "stuck"]')
    found = []
    for text in value:
        kind, _, cause = text.partition(":")
        if kind not in KINDS:
            raise fail("findings", f"{kind!r} is not a finding; known: {', '.join(KINDS)}")
        if cause and cause not in CAUSES.get(kind, ()):
            causes = ", ".join(CAUSES.get(kind, ())) or "none"
            raise fail("findings", f"{kind} has no cause {cause!r}; its causes: {causes}")
        found.append(Expectation(kind, cause or None))
    return tuple(found)


def _number(
    s: dict[str, Any], key: str, default: float, low: float, high: float, fail: Any
) -> float:
    value = s.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(key, f"{key} must be a number of seconds")
    if not low <= value <= high:
        raise fail(key, f"{key} must be from {low:g} to {high:g} seconds, not {value:g}")
    return float(value)


def _is_http(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _url(value: Any, key: str, fail: Any, base_url: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(key, f"{key} must be a URL, or a path such as /api/tasks")
    value = _expanded(value, key, fail)
    if urllib.parse.urlsplit(value).scheme:
        if not _is_http(value):
            raise fail(key, f"{key} must be an http:// or https:// URL, or a path")
    elif not value.startswith("/"):
        raise fail(key, f"{key} must be absolute (http://…) or start with /")
    if any(c in value for c in "\r\n "):
        raise fail(key, f"{key} must not hold spaces or line breaks")
    return value


def _path(value: Any, key: str, fail: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", value):
        raise fail(key, f"{key} must be a dotted path into the JSON response, such as task.id")
    return value


def _headers(value: Any, fail: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise fail("submit.headers", "submit.headers must be a table of name = value")
    headers = []
    for name, text in value.items():
        if isinstance(text, str):
            text = _expanded(text, "submit.headers", fail)
        if not HEADER_NAME.match(name) or not isinstance(text, str) or re.search(r"[\r\n\0]", text):
            raise fail("submit.headers", f"header {name!r} needs a token name and a one-line value")
        headers.append((name, text))
    return tuple(headers)


def check_body(body: Any) -> Any:
    """A body the probe may submit: JSON-encodable and at most MAX_BODY bytes."""
    try:
        size = len(json.dumps(body, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:  # TOML dates, NaN: JSON has no such value
        raise BodyError(f"cannot be sent as JSON ({exc})") from None
    if size > MAX_BODY:
        raise BodyError(f"is {size:,} bytes; at most {MAX_BODY:,}")
    return body


def parse_body(text: str) -> Any:
    """An edited body: JSON text. BodyError says what is wrong, and where."""
    if len(text.encode()) > MAX_BODY:
        raise BodyError(f"the body is more than {MAX_BODY:,} bytes")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BodyError(f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    return check_body(body)


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path of a JSON document (a digit indexes a list), or KeyError."""
    here = data
    for part in path.split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            raise KeyError(path)
    return here


class _Lines:
    """Where things are in a file's text, for errors: tomllib gives no line for a value."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.entries = [
            n
            for n, line in enumerate(self.lines, 1)
            if re.match(r"\s*\[\[\s*scenarios\s*\]\]", line)
        ]

    def _find(self, pattern: str, start: int = 1, end: int | None = None) -> int | None:
        rx = re.compile(pattern)
        for n in range(start, (end or len(self.lines)) + 1):
            if n - 1 < len(self.lines) and rx.search(self.lines[n - 1]):
                return n
        return None

    def top(self, key: str) -> int | None:
        return self._find(rf"^\s*\[{{0,2}}\s*{re.escape(key)}\b")

    def section(self, *names: str) -> int:
        parts = r"\s*\.\s*".join(rf"[\"']?{re.escape(n)}[\"']?" for n in names)
        return self._find(rf"^\s*\[\s*{parts}\s*\]") or self.top(names[0]) or 1

    def key_after(self, start: int, key: str) -> int:
        end = self._find(r"^\s*\[", start + 1) or len(self.lines) + 1
        return self._find(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", start, end - 1) or start

    def entry(self, index: int, key: str | None) -> int | None:
        if index >= len(self.entries):
            return self.top("scenarios")
        start = self.entries[index]
        end = self.entries[index + 1] - 1 if index + 1 < len(self.entries) else None
        if not key:
            return start
        parent, _, last = key.rpartition(".")
        if parent:  # poll.url: from the line that opens poll (a table, or a dotted key)
            opens = self._find(
                rf"^\s*(\[\s*scenarios\.{re.escape(parent)}\s*\]|{re.escape(parent)}\s*[.=])",
                start,
                end,
            )
            start = opens or start
        return self._find(rf"(^|[\s{{,.]){re.escape(last)}\s*=", start, end) or start


# The process's catalogue --------------------------------------------------------------

_active: Catalogue | None = None


def activate(setting: str | None = None) -> Catalogue:
    """Load the files ``setting`` names (``LIFECYCLE_SCENARIOS`` by default) and make them
    the process's scenarios and lifecycles. Raises ScenarioFileError, changing nothing."""
    global _active
    if setting is None:
        from django.conf import settings

        setting = settings.LIFECYCLE_SCENARIOS
    catalogue = load(paths_of(setting))
    statuses.configure(catalogue.lifecycles)
    _active = catalogue
    return catalogue


def active() -> Catalogue:
    return _active if _active is not None else activate()


def all_scenarios() -> list[Scenario]:
    return list(active().scenarios.values())


def get_scenario(name: str) -> Scenario:
    try:
        return active().scenarios[name]
    except KeyError:
        raise UnknownScenario(name) from None


def find_scenario(name: str) -> Scenario | None:
    return active().scenarios.get(name)
