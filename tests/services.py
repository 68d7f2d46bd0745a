"""The real services the tests need: a missing one skips a test locally and fails it in CI.

Call ``require_postgres()`` / ``require_rabbitmq()`` at the top of a test module (before
pytest-django builds the test database), or use the ``postgres`` / ``rabbitmq`` fixtures of
tests/conftest.py. The checks are `lifecycle up`'s own, so the message names the address and
the command that starts the service.
"""

from __future__ import annotations

import functools
import os

import pytest

CI = os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@functools.cache
def _postgres_error() -> str | None:
    from lifecycle.runtime.services import check_postgres

    problem = check_postgres()
    return str(problem) if problem else None


@functools.cache
def _rabbitmq_error() -> str | None:
    from lifecycle.runtime.services import check_rabbitmq

    problem = check_rabbitmq()
    return str(problem) if problem else None


def require_postgres() -> None:
    if error := _postgres_error():
        skip_or_fail(error)


def require_rabbitmq() -> None:
    if error := _rabbitmq_error():
        skip_or_fail(error)
