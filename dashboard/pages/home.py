"""Home (``home.html``): recent tasks, live; the search (status, scenario, verdict, finding
kind, time range, key prefix, each with its counts: ``lifecycle.check.search``); the scenario
panel."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from lifecycle.capture.follower import MAX_PROBLEMS
from lifecycle.capture.trigger import PROBLEM_SEPARATOR
from lifecycle.check import findings, search
from lifecycle.check.rules import KINDS
from lifecycle.models import WatchedDatabase
from lifecycle.scenarios.catalogue import all_scenarios
from lifecycle.store import eventlog

MAX_PAGE = 10_000  # of the task list (250,000 tasks): deeper, a search narrows it


def page_number(request: HttpRequest) -> tuple[int, str | None]:
    """The page asked for (the first when none, or no number, is given), and why it was
    refused: a page past ``MAX_PAGE`` would read a table's worth of events (and past
    PostgreSQL's integers), so the first is shown instead."""
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1, None
    if page > MAX_PAGE:
        return 1, f"page is at most {MAX_PAGE:,}: the filters narrow the list"
    return page, None


def capture_problems() -> list[tuple[str, list[tuple[str, str]]]]:
    """Each watched database whose capture the follower found broken, with its problems:
    (what is wrong, the command that mends it); at most the follower's bound of them."""
    return [
        (db.name, [_split(line) for line in db.problem.split("\n")[: MAX_PROBLEMS + 1]])
        for db in WatchedDatabase.objects.exclude(problem="").only("name", "problem")
    ]


def _split(line: str) -> tuple[str, str]:
    # What lifecycle.capture.follower records: the problem, a tab, the command (a line without a tab
    # is a problem with no command). Neither part can hold a tab or a line break.
    problem, _, command = line.partition(PROBLEM_SEPARATOR)
    return problem, command


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    page, page_error = page_number(request)
    filters, errors = search.Filters.parse(request.GET)
    if page_error:
        errors.append(page_error)
    total = None
    facets: list[search.Facet] = []
    if filters.active:
        tasks, has_next, total = search.search(filters, page)
        facets = search.facets(filters)
    else:
        tasks, has_next = eventlog.recent_tasks(page)
    findings.with_findings(tasks)
    keep = filters.query()
    return render(
        request,
        "dashboard/home.html",
        {
            "tasks": tasks,
            "page": page,
            "has_next": has_next,
            "filters": filters,
            "keep": urlencode(keep),
            "searching": filters.active,
            "total": total,
            "facets": {f.name: f.values for f in facets},
            "errors": errors,
            "wanted": filters.findings,
            "kinds": KINDS,
            "verdicts": search.VERDICTS,
            "first_pass": filters.active and not findings.first_pass_done(),
            "scenarios": all_scenarios(),
            "token": uuid.uuid4().hex,
            "capture_problems": capture_problems(),
        },
        status=400 if errors else 200,
    )
