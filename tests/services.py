"""The real services integration tests need: skip when one is missing, fail in CI.

Call ``require_postgres()`` / ``require_rabbitmq()`` at the top of a test module (before
pytest-django builds the test database) or use the fixtures of the same names.
"""

from __future__ import annotations

import functools
import os

import pytest

CI = os.environ.get("CI", "").strip().lower() == "true"


@functools.cache
def _postgres_error() -> str | None:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            dbname="postgres",
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            connect_timeout=2,
        ).close()
    except Exception as exc:
        return f"PostgreSQL unreachable: {exc}"
    return None


@functools.cache
def _rabbitmq_error() -> str | None:
    import pika
    from django.conf import settings

    params = pika.URLParameters(settings.AMQP_URL)
    params.socket_timeout = 2
    params.stack_timeout = 3
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
    except Exception as exc:
        return f"RabbitMQ unreachable: {exc!r}"
    return None


def _require(error: str | None) -> None:
    if error is None:
        return
    if CI:
        pytest.fail(error, pytrace=False)
    pytest.skip(error, allow_module_level=True)


def require_postgres() -> None:
    _require(_postgres_error())


def require_rabbitmq() -> None:
    _require(_rabbitmq_error())


@pytest.fixture
def postgres() -> None:
    require_postgres()


@pytest.fixture
def rabbitmq() -> None:
    require_rabbitmq()
