"""The house's rules, checked on the code: the web imports the engine, never the reverse;
the client that other applications import needs no Django and nothing else of ours."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files(package)
        for name in sorted(imports(path))
        if name.split(".")[0] in forbidden or name.startswith(forbidden)
    ]


def test_the_engine_never_imports_the_web_or_the_benchmarks() -> None:
    assert offenders("lifecycle", ("dashboard", "bench")) == []


def test_the_web_never_imports_the_benchmarks() -> None:
    assert offenders("dashboard", ("bench",)) == []


# The one module of the client for Django applications; nothing else of the client imports it.
CLIENT_FOR_DJANGO = ROOT / "lifecycle" / "client" / "django.py"


def test_the_client_imports_nothing_of_ours_but_itself_and_no_django() -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files("lifecycle/client")
        for name in sorted(imports(path))
        if (
            name.split(".")[0] in {"django", "asgiref"}
            and path != CLIENT_FOR_DJANGO
            or name.split(".")[0] in {"channels", "daphne", "dashboard"}
            or name == "lifecycle.client.django"
            or (name.startswith("lifecycle") and not name.startswith("lifecycle.client"))
        )
    ]
    assert bad == []


def test_the_client_imports_in_a_process_where_django_cannot_be_imported() -> None:
    # Given a process in which importing Django fails, as in an application without it
    code = """
import sys
class NoDjango:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"django", "channels", "daphne"}:
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, NoDjango())
import lifecycle.client, lifecycle.client.dramatiq_middleware
from lifecycle.client import Publisher, report_read, install_log_handler, task_context
from lifecycle.client.dramatiq_middleware import LifecycleEvents
publisher = Publisher(max_events=1)
middleware = LifecycleEvents(publisher=publisher)
print(publisher.exchange, sorted(m for m in sys.modules if m.startswith("django")))
"""
    # When the client, its Dramatiq middleware and its publisher are set up there
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "LIFECYCLE_NAMESPACE": "elsewhere"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then they work, configured from the environment, with no Django module loaded
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["elsewhere.events", "[]"]


# The engine's rooms (README: Layout): each package or top-level module of ``lifecycle``, and
# the rooms of the engine it may import. A room not listed here may import any room.
ENGINE_MAY_IMPORT: dict[str, set[str]] = {
    "events": {"client"},
    "statuses": set(),
    "history": {"events"},
    "words": {"events"},
    "runtime": {"client", "sql"},
    "people": {"models", "runtime"},
    "capture": {"events", "history", "models", "runtime", "sql", "statuses"},
    "store": {"events", "history", "models", "runtime", "sql", "statuses"},
    "check": {"capture", "events", "history", "models", "runtime", "sql", "statuses", "store"},
    "timeline": {"check", "events", "history", "models", "runtime", "statuses", "store", "words"},
    "feed": {"events", "runtime", "sql"},
    "ingest": {"client", "events", "runtime", "sql"},
    "nodes": {"client", "models", "runtime", "sql", "store", "capture", "check"},
}
MOST_TOP_LEVEL_MODULES = 12


def engine_room(path: Path) -> str:
    parts = path.relative_to(ROOT / "lifecycle").parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def test_each_room_of_the_engine_imports_only_the_rooms_below_it() -> None:
    bad = []
    for path in files("lifecycle"):
        room = engine_room(path)
        allowed = ENGINE_MAY_IMPORT.get(room)
        if allowed is None or "migrations" in path.parts:
            continue
        for name in sorted(imports(path)):
            parts = name.split(".")
            if parts[0] == "lifecycle" and len(parts) > 1 and parts[1] not in allowed | {room}:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []


def test_every_package_of_the_engine_says_what_lives_there_and_what_it_may_import() -> None:
    for room in ENGINE_MAY_IMPORT:
        init = ROOT / "lifecycle" / room / "__init__.py"
        if init.exists():
            doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
            assert "may import" in doc or "imports nothing" in doc, init


def test_the_engine_keeps_few_modules_at_its_top() -> None:
    top = sorted(p.name for p in (ROOT / "lifecycle").glob("*.py"))
    assert len(top) <= MOST_TOP_LEVEL_MODULES, top
