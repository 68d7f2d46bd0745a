"""The web process's allocator settings (lifecycle/runtime/allocator.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lifecycle.runtime import allocator

pytestmark = pytest.mark.skipif(allocator._LIBC is None, reason="not glibc")


def _run(code: str, env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_arenas_are_capped_unless_the_environment_says_otherwise() -> None:
    code = "from lifecycle.runtime import allocator; print(allocator.limit_arenas())"
    assert _run(code, {"PATH": "/usr/bin"}) == "True"
    assert _run(code, {"PATH": "/usr/bin", "MALLOC_ARENA_MAX": "4"}) == "False"


def test_memory_goes_back_once_the_last_heavy_reader_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(allocator, "trim", lambda: trims.append(1))
    with allocator.heavy():
        with allocator.heavy():
            pass
        assert trims == []  # another reader still runs
        allocator.begin_heavy()
    assert trims == []
    allocator.end_heavy()
    assert trims == [1]
    with pytest.raises(ValueError), allocator.heavy():
        raise ValueError
    assert trims == [1, 1]
