"""Environments of their own, made with pip (15-40 s each): the attached services' and the
psycopg 2 project's. Each one a collected test needs is begun in the background as the
session starts (tests/conftest.py), while the tests before its first user run; its
fixture waits for it. A test needs one by its fixture, or by ``environment(name)`` when it
asks for it only for some of its params. They are made one at a time, in the order of
their first users, at a lower priority (nice 10, which pip inherits from the thread that
starts it): the tests running meanwhile, some of them timed, keep the CPU they had."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

Maker = Callable[[Path], Path]  # a new folder to make it in -> its python
MAKERS: dict[str, Maker] = {}  # by the name of the fixture that gives it
_pool = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="venv", initializer=os.nice, initargs=(10,)
)
_begun: dict[str, Future[Path]] = {}
ROOT = Path(__file__).resolve().parents[1]


def maker(name: str) -> Callable[[Maker], Maker]:
    def register(make: Maker) -> Maker:
        MAKERS[name] = make
        return make

    return register


def with_client(where: Path, pip_args: Callable[[Path], list[str]]) -> Path:
    """A venv in ``where`` with pip's ``pip_args`` installed, given the folder of the client
    copied from this checkout (to name it with its extras); its python."""
    source = where / "client-source"
    shutil.copytree(
        ROOT / "lifecycle" / "client", source, ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    python = where / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *pip_args(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return python


def needed(items: Iterable[pytest.Item]) -> list[str]:
    """The environments these tests need, in the order of their first users."""
    names: dict[str, None] = {}
    for item in items:
        marked = [name for mark in item.iter_markers("environment") for name in mark.args]
        names.update(dict.fromkeys([*getattr(item, "fixturenames", ()), *marked]))
    return [name for name in names if name in MAKERS]


def begin(name: str, factory: pytest.TempPathFactory) -> Future[Path]:
    if name not in _begun:
        _begun[name] = _pool.submit(MAKERS[name], factory.mktemp(name))
    return _begun[name]


def made(name: str, factory: pytest.TempPathFactory) -> Path:
    """Its python, once made (a failure to make it is raised here, in its fixture)."""
    return begin(name, factory).result()


def wait() -> None:
    """Until none is being made (the session's end: no pip left running)."""
    for future in _begun.values():
        future.exception()
