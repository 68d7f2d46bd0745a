"""``make test``'s shards (``tests/shards.py``): every file of tests runs in exactly one
of them, each in its own namespace and database, and the exit status is the worst."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests import shards

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def runs_in(arguments: list[str], found: Path) -> bool:
    """Whether pytest given ``arguments`` collects the file ``found``: it is under one of
    their paths and not under one they ``--ignore``."""
    paths = [ROOT / a for a in arguments if not a.startswith("-")]
    ignored = [ROOT / a.removeprefix("--ignore=") for a in arguments if a.startswith("--ignore=")]
    return any(found.is_relative_to(p) for p in paths) and not any(
        found.is_relative_to(p) for p in ignored
    )


def test_every_file_holding_tests_runs_in_exactly_one_shard() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    skipped = config["ini_options"]["norecursedirs"]
    every = shards.shards({})
    holding = set()
    for found in (ROOT / "tests").rglob("test_*.py"):
        parts = found.relative_to(ROOT).parts
        if any(fnmatch(part, pattern) for part in parts for pattern in skipped):
            continue  # an attached service's own tests, run by the acceptance tests
        holding.add(found)
    assert holding
    for found in holding:
        owners = [name for name, arguments, _ in every if runs_in(arguments, found)]
        assert len(owners) == 1, f"{found} runs in {owners or 'no shard'}"
    # and a path a shard names or ignores is there (a file renamed is not left out or run twice)
    for _, arguments, _ in every:
        for argument in arguments:
            assert (ROOT / argument.removeprefix("--ignore=")).exists(), argument


@pytest.mark.parametrize(
    ("env", "namespace", "database"),
    [
        ({}, "lifecycle-test-b", "test_lifecycle_b"),
        ({"LIFECYCLE_NAMESPACE": "ci-7"}, "ci-7-b", "test_lifecycle_b"),
        (
            {"DATABASE_URL": "postgres://u:p@db:5432/inspector"},
            "lifecycle-test-b",
            "test_inspector_b",
        ),
        ({"DATABASE_URL": "postgres://u@db/in%2Dspector"}, "lifecycle-test-b", "test_in-spector_b"),
        ({"TEST_DATABASE_NAME": "t" * 70}, "lifecycle-test-b", "t" * 61 + "_b"),
    ],
)
def test_the_other_shards_have_a_namespace_and_a_database_of_their_own(
    env: dict[str, str], namespace: str, database: str
) -> None:
    (_, _, first), (_, _, second), (_, _, third) = shards.shards(env)
    assert first == {}  # the caller's own, as a plain pytest run gets them
    assert second == {"LIFECYCLE_NAMESPACE": namespace, "TEST_DATABASE_NAME": database}
    assert third == {
        "LIFECYCLE_NAMESPACE": namespace[:-1] + "c",
        "TEST_DATABASE_NAME": database[:-1] + "c",
    }
    assert len(second["TEST_DATABASE_NAME"]) <= 63 and len(third["TEST_DATABASE_NAME"]) <= 63


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([0, 0], 0),
        ([0, 1], 1),
        ([2, 1], 2),
        ([5, 0], 0),  # -k left one shard empty
        ([0, 5], 0),
        ([5, 5], 5),  # nothing collected anywhere
        ([5, 1], 1),
        ([0, 5, 0], 0),
        ([5, 5, 5], 5),
        ([0, 0, 3], 3),
    ],
)
def test_the_suite_fails_if_a_shard_fails_and_an_empty_shard_is_not_a_failure(
    statuses: list[int], expected: int
) -> None:
    assert shards.outcome(statuses) == expected
