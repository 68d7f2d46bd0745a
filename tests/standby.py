"""A hot standby of the test server for the tests that read from one: made (or reused)
with ``lifecycle standby start``, stopped after the session if this session made it.

A machine that cannot make one (no pg_basebackup, not root and no replication line) skips
those tests locally and fails them in CI, like a missing service."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.services import skip_or_fail


def standby_url() -> str:
    """The standby's URL of the test database (whether or not a standby runs yet)."""
    from django.db import connection

    from lifecycle.runtime import standby as standbys

    return standbys.configured().url(connection.settings_dict["NAME"])


@pytest.fixture(scope="session")
def standby(postgres: None, test_database: None) -> Iterator[str]:
    """The standby's URL of the test database, once the standby has replayed its creation."""
    from lifecycle.runtime import standby as standbys

    where = standbys.configured()
    made = not standbys.running(where)
    try:
        standbys.start(where)
    except (standbys.StandbyError, OSError) as exc:
        skip_or_fail(f"no hot standby could be made: {exc}")
    url = standby_url()
    deadline = time.monotonic() + 60
    while True:  # the test database's creation and migrations reach it a delay later
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                if conn.execute("SELECT to_regclass('lab_task')").fetchone()[0]:  # type: ignore[index]
                    break
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the standby has not replayed the test database's creation: {url}")
        time.sleep(0.5)
    yield url
    if made:
        standbys.stop(where)
