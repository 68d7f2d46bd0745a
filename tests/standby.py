"""A hot standby of the test server for the tests that read from one: made (or reused)
with ``lifecycle standby start``, stopped after the session if this session made it.

A machine that cannot make one (no pg_basebackup, not root and no replication line) skips
those tests locally and fails them in CI, like a missing service."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import wait_for
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

    def replayed() -> bool:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                return bool(conn.execute("SELECT to_regclass('lab_task')").fetchone()[0])  # type: ignore[index]
        except psycopg.Error:
            return False

    # The test database's creation and migrations reach it a delay later
    wait_for(replayed, 60, 0.5, f"the standby to replay the test database's creation: {url}")
    yield url
    if made:
        standbys.stop(where)
