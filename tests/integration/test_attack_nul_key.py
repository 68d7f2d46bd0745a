"""An outside attack on the task routes: a NUL in the task key of a URL.

No event's key can hold a NUL (the schema refuses it, PostgreSQL's text cannot store
it), but ``/tasks/a%00b``, ``/api/tasks/%00/timeline`` and ``/api/tasks/%00/otlp`` went
to the database with it: a 500 each (``DataError: PostgreSQL text fields cannot contain
NUL``), a traceback in the log, for any reader. The route's converter refuses a NUL: a
404, as for any key that has no task. Against the real database."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

PATHS = [
    "/tasks/a%00b",
    "/tasks/a%00b/",
    "/windows/a%00b",
    "/reads/a%00b",
    "/commits/a%00b",
    "/api/tasks/%00/timeline",
    "/api/tasks/a%00/timeline?limit=5",
    "/api/tasks/%00/otlp",
]


@pytest.mark.parametrize("path", PATHS)
def test_a_nul_in_a_task_key_is_a_404_not_a_500(client, postgres, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404, (path, response.status_code)
