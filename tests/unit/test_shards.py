"""``make test``'s two shards (``tests/shards.py``): every folder of tests runs in one of
them, each in its own namespace and database, and the exit status is the worst."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests import shards

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_every_folder_holding_tests_runs_in_exactly_one_shard() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    skipped = config["ini_options"]["norecursedirs"]
    folders = [folder for _, each, _ in shards.shards({}) for folder in each]
    assert len(folders) == len(set(folders))
    holding = set()
    for found in (ROOT / "tests").rglob("test_*.py"):
        parts = found.relative_to(ROOT).parts
        if any(fnmatch(part, pattern) for part in parts for pattern in skipped):
            continue  # an attached service's own tests, run by the acceptance tests
        holding.add(found)
    assert holding
    for found in holding:
        owners = [f for f in folders if found.is_relative_to(ROOT / f)]
        assert len(owners) == 1, f"{found} runs in {owners or 'no shard'}"


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
def test_the_second_shard_has_a_namespace_and_a_database_of_its_own(
    env: dict[str, str], namespace: str, database: str
) -> None:
    (_, _, first), (_, _, second) = shards.shards(env)
    assert first == {}  # the caller's own, as a plain pytest run gets them
    assert second == {"LIFECYCLE_NAMESPACE": namespace, "TEST_DATABASE_NAME": database}
    assert len(second["TEST_DATABASE_NAME"]) <= 63


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
    ],
)
def test_the_suite_fails_if_a_shard_fails_and_an_empty_shard_is_not_a_failure(
    statuses: list[int], expected: int
) -> None:
    assert shards.outcome(statuses) == expected
