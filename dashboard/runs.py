"""Starting a scenario's run from a request: the JSON API's routes and the pages' forms
take this one way, and each answers in its own shape (JSON, or a redirect and text)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dashboard.access import access_of
from lifecycle.models import Run
from lifecycle.runtime.database import off_thread
from lifecycle.scenarios import probe
from lifecycle.scenarios.catalogue import Scenario


async def start_run(
    request: HttpRequest,
    scenario: Scenario,
    resubmit_of: Run | None = None,
    token: str | None = None,
    **options: Any,
) -> Run:
    """Start ``scenario`` (again, for ``resubmit_of``) as the request's user; ``token``: the
    form's, so a double click starts one run; ``options``: a ``body`` that replaces the
    scenario's. Raises ``probe.Unavailable``.

    Off the request's thread: the probe's HTTP submit goes to this same server and must not
    wait behind this request on Django's one thread for sync views."""
    return await off_thread(probe.start)(
        scenario, resubmit_of, token, started_by=access_of(request).who, **options
    )
