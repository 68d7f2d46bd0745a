"""A task's lifecycle: its statuses, the terminal ones and the transitions allowed between
them. The one definition that the checker, the timeline's chips, the probe and the lab read.

``LAB`` is the lab's lifecycle and the default for any table that names no other. An
application describes its own per captured table, in a scenario file's ``[lifecycles]``
(``lifecycle.scenarios.catalogue``); ``Lifecycle.parse`` reads that table and ``configure``
makes the file's lifecycles the ones ``for_table`` and ``of_history`` answer with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

PENDING, RUNNING, COMPLETED, FAILED = "PENDING", "RUNNING", "COMPLETED", "FAILED"
MAX_STATUS = 64  # the event table's status column
ARROW = "->"


class LifecycleError(ValueError):
    """A lifecycle that cannot be: ``key`` is the setting at fault (for the file's line)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key


@dataclass(frozen=True)
class Lifecycle:
    """The statuses a task moves through; other applications describe their own."""

    statuses: tuple[str, ...]  # in the order a task meets them; the first is a new task's
    terminal: frozenset[str]
    allowed: frozenset[tuple[str, str]]
    running: str | None = None  # entering it twice without a retry is a second execution
    failed: frozenset[str] = frozenset()  # the terminal statuses that mean failure

    @property
    def succeeded(self) -> frozenset[str]:
        """The terminal statuses that mean success."""
        return self.terminal - self.failed

    def is_terminal(self, status: str | None) -> bool:
        return status in self.terminal

    def role(self, status: str | None) -> str | None:
        """What a status is to this lifecycle: initial, running, success, failure or other;
        None when it is not one of its statuses. Chips take their shape and colour from it."""
        if status not in self.statuses:
            return None
        if status in self.failed:
            return "failure"
        if status in self.terminal:
            return "success"
        if status == self.running:
            return "running"
        if status == self.statuses[0]:
            return "initial"
        return "other"

    def reachable(self, old: str, new: str) -> bool:
        """Whether ``new`` can follow ``old`` through allowed transitions (a retry goes back)."""
        seen, todo = {old}, [old]
        while todo:
            here = todo.pop()
            for a, b in self.allowed:
                if a == here and b not in seen:
                    seen.add(b)
                    todo.append(b)
        return new in seen

    def as_toml(self) -> dict[str, Any]:
        """The table ``parse`` reads back into this lifecycle."""
        return {
            "statuses": list(self.statuses),
            "success": [s for s in self.statuses if s in self.succeeded],
            "failure": [s for s in self.statuses if s in self.failed],
            **({"running": self.running} if self.running else {}),
            "transitions": sorted(f"{a} {ARROW} {b}" for a, b in self.allowed),
        }

    @classmethod
    def parse(cls, table: Mapping[str, Any]) -> Lifecycle:
        """A lifecycle from its TOML table; LifecycleError names the key and the reason.

        ``statuses`` (in order, the first a new task's), ``success`` and ``failure`` (the
        terminal ones), ``running`` (optional: a second entry is a second execution) and
        ``transitions`` (``"A -> B"`` each; anything else is forbidden).
        """
        known = {"statuses", "success", "failure", "running", "transitions"}
        for key in table:
            if key not in known:
                raise LifecycleError(key, f"unknown key {key!r}; known: {', '.join(sorted(known))}")
        statuses = _status_list(table, "statuses", required=True)
        if not statuses:
            raise LifecycleError("statuses", "statuses must name at least one status")
        if len(set(statuses)) != len(statuses):
            raise LifecycleError("statuses", "statuses names a status twice")
        success = _status_list(table, "success", required=True)
        failure = _status_list(table, "failure", required=False)
        for key, named in (("success", success), ("failure", failure)):
            for status in named:
                if status not in statuses:
                    raise LifecycleError(key, f"{key} names {status!r}, which is not in statuses")
        if not success:
            raise LifecycleError("success", "success must name at least one terminal status")
        both = set(success) & set(failure)
        if both:
            raise LifecycleError(
                "failure", f"{', '.join(sorted(both))} cannot mean both success and failure"
            )
        running = table.get("running")
        if running is not None and (not isinstance(running, str) or running not in statuses):
            raise LifecycleError("running", f"running must be one of the statuses, not {running!r}")
        if running in success or running in failure:
            raise LifecycleError("running", "running cannot be a terminal status")
        transitions = table.get("transitions")
        if not isinstance(transitions, list) or not all(isinstance(t, str) for t in transitions):
            raise LifecycleError(
                "transitions", 'transitions must be a list of strings like "QUEUED -> RUNNING"'
            )
        allowed = set()
        for text in transitions:
            parts = [p.strip() for p in text.split(ARROW)]
            if len(parts) != 2 or not all(parts):
                raise LifecycleError(
                    "transitions", f'{text!r} is not a transition like "QUEUED -> RUNNING"'
                )
            for status in parts:
                if status not in statuses:
                    raise LifecycleError(
                        "transitions", f"{text!r} names {status!r}, which is not in statuses"
                    )
            allowed.add((parts[0], parts[1]))
        return cls(
            statuses=tuple(statuses),
            terminal=frozenset(success) | frozenset(failure),
            allowed=frozenset(allowed),
            running=running,
            failed=frozenset(failure),
        )


def _status_list(table: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
    value = table.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise LifecycleError(key, f"{key} must be a list of status names")
    for status in value:
        if len(status) > MAX_STATUS or status != status.strip():
            raise LifecycleError(
                key, f"{status!r} is not a status: at most {MAX_STATUS} characters, no edge spaces"
            )
    return list(value)


LAB = Lifecycle(
    statuses=(PENDING, RUNNING, COMPLETED, FAILED),
    terminal=frozenset({COMPLETED, FAILED}),
    # RUNNING -> PENDING is a failed attempt that will be retried; PENDING -> FAILED a task
    # cancelled or rejected before it ran.
    allowed=frozenset(
        {
            (PENDING, RUNNING),
            (RUNNING, COMPLETED),
            (RUNNING, FAILED),
            (RUNNING, PENDING),
            (PENDING, FAILED),
        }
    ),
    running=RUNNING,
    failed=frozenset({FAILED}),
)
DEFAULT = LAB


def table_name(name: str) -> str:
    """A captured table's name as its events carry it: ``schema.table`` (``public`` when the
    name gives no schema)."""
    return name if "." in name else f"public.{name}"


# The lifecycles of the active scenario files, by table (``configure``), and the role of
# each status met so far in them (a chip per event asks: a page of 100,000 events).
_TABLES: dict[str, Lifecycle] = {}
_ROLES: dict[str | None, str | None] = {}
ROLES_KEPT = 1000


def configure(tables: Mapping[str, Lifecycle]) -> None:
    """Make these the lifecycles of their tables (the scenario files', at start-up)."""
    _TABLES.clear()
    _TABLES.update({table_name(name): lc for name, lc in tables.items()})
    _ROLES.clear()


def for_table(table: str | None) -> Lifecycle:
    """The lifecycle of a captured table: its configured one, else the default."""
    if table is None:
        return DEFAULT
    return _TABLES.get(table_name(table), DEFAULT)


class _Event(Protocol):
    @property
    def source(self) -> str: ...
    @property
    def body(self) -> dict[str, Any]: ...


def of_history(events: Iterable[_Event]) -> Lifecycle:
    """The lifecycle of a task: the one of the table its commits were captured from."""
    for event in events:
        if event.source == "db":
            table = event.body.get("table")
            return for_table(table if isinstance(table, str) else None)
    return DEFAULT


def role_of(status: str | None, lifecycles: Sequence[Lifecycle] | None = None) -> str | None:
    """A status's role in the first of these lifecycles (all configured ones and the
    default, unless given) that knows it; None for a status none of them knows."""
    if lifecycles is None:
        if status in _ROLES:
            return _ROLES[status]
        found = role_of(status, [*_TABLES.values(), DEFAULT])
        if len(_ROLES) < ROLES_KEPT:  # statuses come from observed systems: bounded
            _ROLES[status] = found
        return found
    for lifecycle in lifecycles:
        found = lifecycle.role(status)
        if found is not None:
            return found
    return None
