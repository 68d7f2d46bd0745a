"""The client's Django middleware and decorator, through Django's real request handlers (sync
and async, with a urlconf of this module): a request runs in the task its URL names, so the
view's warnings reach that task, and its reads are reported with the status of the response
the client got. No database: the views report reads by hand."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import Http404, HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path, register_converter
from django.utils.asyncio import async_unsafe

from lifecycle.client import config, reads
from lifecycle.client.context import current_task
from lifecycle.client.django import LifecycleMiddleware, reports_reads, request_task, status_of
from lifecycle.client.logs import LifecycleLogHandler
from tests.published import Published

pytestmark = pytest.mark.unit

log = logging.getLogger("test.django.views")


class Recorder(Published):
    def reads(self) -> list[tuple[str, str | None, int]]:
        return [
            (m["task"], m["status"], m["body"]["http_status"])
            for m in self.messages
            if m["source"] == "api"
        ]

    def logs(self) -> list[tuple[str, str]]:
        return [(m["task"], m["body"]["message"]) for m in self.messages if m["source"] == "log"]


# -- the application's views --------------------------------------------------------------


def job(request: HttpRequest, job_id: int) -> HttpResponse:
    reads.report_read(job_id, "RUNNING", xmin=7)
    log.warning("job %s is slow", job_id)
    if request.GET.get("fail"):
        raise RuntimeError("the view broke after its read")
    if request.GET.get("missing"):
        raise Http404("no such job")
    return HttpResponse(f"job {job_id}: {current_task.get()}")


def by_pk(request: HttpRequest, pk: int) -> HttpResponse:
    return job(request, pk)


async def ajob(request: HttpRequest, job_id: int) -> HttpResponse:
    reads.report_read(job_id, "RUNNING", xmin=7)
    log.warning("job %s is slow", job_id)
    if request.GET.get("fail"):
        raise RuntimeError("the view broke after its read")
    return HttpResponse(f"job {job_id}: {current_task.get()}")


def task_of_header(request: HttpRequest, kwargs: dict[str, Any]) -> str | None:
    """A LIFECYCLE_REQUEST_TASK function: the key from a header."""
    return request.headers.get("X-Job")


def broken_task_function(request: HttpRequest, kwargs: dict[str, Any]) -> str | None:
    raise RuntimeError("theirs")


@async_unsafe
def task_of_header_from_the_orm(request: HttpRequest, kwargs: dict[str, Any]) -> str | None:
    """A LIFECYCLE_REQUEST_TASK function that looks the task up with the ORM, which Django
    allows only outside the event loop (async_unsafe, as the ORM's own calls are)."""
    return request.headers.get("X-Job")


@reports_reads(task="job_id")
def decorated(request: HttpRequest, job_id: int) -> HttpResponse:
    reads.report_read(job_id, "DONE")
    log.warning("decorated view of %s", job_id)
    if request.GET.get("missing"):
        raise Http404("no such job")
    return HttpResponse(status=202)


@reports_reads(task="job_id")
async def adecorated(request: HttpRequest, job_id: int) -> HttpResponse:
    reads.report_read(job_id, "DONE")
    return HttpResponse(status=202)


class Unprintable:
    """What a path converter of theirs may give a view: an object (a model instance, say)
    whose ``str()`` fails."""

    def __str__(self) -> str:
        raise RuntimeError("its __str__ needs a related row that is gone")


class UnprintableConverter:
    regex = "[0-9]+"

    def to_python(self, value: str) -> Unprintable:
        return Unprintable()

    def to_url(self, value: object) -> str:
        return "1"


register_converter(UnprintableConverter, "unprintable")


def untouched(request: HttpRequest, job_id: Unprintable) -> HttpResponse:
    return HttpResponse("fine")


@reports_reads(task=f"{__name__}.task_of_header_from_the_orm")
async def aheader(request: HttpRequest, job_id: int) -> HttpResponse:
    return HttpResponse(f"job {job_id}: {current_task.get()}")


urlpatterns = [
    path("aheader/<int:job_id>/", aheader),
    path("jobs/<unprintable:job_id>/untouched/", untouched),
    path("jobs/<int:job_id>/", job),
    path("ajobs/<int:job_id>/", ajob),
    path("plain/<int:job_id>/", decorated),
    path("aplain/<int:job_id>/", adecorated),
    path("other/<int:pk>/", by_pk),
]

MIDDLEWARE = ["lifecycle.client.django.LifecycleMiddleware"]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    found = Recorder()
    monkeypatch.setattr(reads, "get_publisher", lambda: found)
    monkeypatch.delenv("LIFECYCLE_KEY_PREFIX", raising=False)
    config.forget()
    handler = LifecycleLogHandler("api", publisher=found)  # type: ignore[arg-type]
    log.addHandler(handler)
    log.propagate = False
    yield found
    log.removeHandler(handler)
    log.propagate = True


def client() -> Client:
    return Client(raise_request_exception=False)


# -- the middleware ---------------------------------------------------------------------------


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, LIFECYCLE_REQUEST_TASK="job_id")
def test_a_request_runs_in_its_task_and_its_read_takes_the_responses_status(
    recorder: Recorder,
) -> None:
    # When a view of job 5 reads, logs a warning and answers
    answer = client().get("/jobs/5/")
    # Then it ran in task 5, its warning is on task 5, and its read says 200
    assert answer.content == b"job 5: 5"
    assert recorder.logs() == [("5", "job 5 is slow")]
    assert recorder.reads() == [("5", "RUNNING", 200)]
    # And nothing of the request stays behind in the context
    assert current_task.get() is None


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, LIFECYCLE_REQUEST_TASK="job_id")
def test_a_view_that_fails_after_its_read_reports_the_500_the_client_got(
    recorder: Recorder,
) -> None:
    answer = client().get("/jobs/5/?fail=1")
    assert answer.status_code == 500
    assert recorder.reads() == [("5", "RUNNING", 500)]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, LIFECYCLE_REQUEST_TASK="job_id")
def test_a_404_is_a_404(recorder: Recorder) -> None:
    assert client().get("/jobs/5/?missing=1").status_code == 404
    assert recorder.reads() == [("5", "RUNNING", 404)]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
def test_by_default_only_a_task_id_kwarg_names_the_task(recorder: Recorder) -> None:
    # Given the default LIFECYCLE_REQUEST_TASK ("task_id") and a view whose kwarg is job_id
    client().get("/jobs/5/")
    # Then its warning belongs to no task (it is not published), and its read still is
    assert recorder.logs() == []
    assert recorder.reads() == [("5", "RUNNING", 200)]


@override_settings(
    ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, LIFECYCLE_REQUEST_TASK="job_id, pk"
)
def test_several_kwarg_names_the_first_present_wins(recorder: Recorder) -> None:
    client().get("/other/9/")
    assert recorder.logs() == [("9", "job 9 is slow")]


@override_settings(
    ROOT_URLCONF=__name__,
    MIDDLEWARE=MIDDLEWARE,
    LIFECYCLE_REQUEST_TASK=f"{__name__}.task_of_header",
    LIFECYCLE_KEY_PREFIX="jobs-db:",
)
def test_a_function_in_settings_names_the_task_and_the_prefix_goes_before_it(
    recorder: Recorder,
) -> None:
    client().get("/jobs/5/", headers={"X-Job": "77"})
    assert recorder.logs() == [("jobs-db:77", "job 5 is slow")]
    assert recorder.reads() == [("jobs-db:5", "RUNNING", 200)]


@override_settings(
    ROOT_URLCONF=__name__,
    MIDDLEWARE=MIDDLEWARE,
    LIFECYCLE_REQUEST_TASK=f"{__name__}.broken_task_function",
)
def test_a_function_that_fails_names_no_task_and_the_request_goes_on(
    recorder: Recorder,
) -> None:
    answer = client().get("/jobs/5/")
    assert answer.status_code == 200 and answer.content == b"job 5: None"
    assert recorder.reads() == [("5", "RUNNING", 200)]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, LIFECYCLE_REQUEST_TASK="job_id")
def test_a_url_kwarg_that_cannot_be_made_text_names_no_task_and_the_view_answers(
    recorder: Recorder,
) -> None:
    # Given a view whose task kwarg, from a converter of theirs, fails str() (it never calls it)
    # When it is requested through the middleware
    answer = client().get("/jobs/5/untouched/")
    # Then it answers as it would without the middleware, in no task
    assert (answer.status_code, answer.content) == (200, b"fine")
    assert recorder.messages == []


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, LIFECYCLE_REQUEST_TASK="job_id")
def test_an_unknown_url_is_answered_as_without_the_middleware(recorder: Recorder) -> None:
    assert client().get("/nowhere/").status_code == 404
    assert recorder.messages == []


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, LIFECYCLE_REQUEST_TASK="job_id")
async def test_the_async_stack_does_the_same(recorder: Recorder) -> None:
    # Given Django's ASGI handler: the middleware runs in async mode
    ok = await AsyncClient().get("/ajobs/5/")
    failed = await AsyncClient(raise_request_exception=False).get("/ajobs/6/?fail=1")
    # A sync view under the async middleware runs in a thread: its context follows it
    sync_view = await AsyncClient().get("/jobs/7/")
    assert ok.content == b"job 5: 5" and sync_view.content == b"job 7: 7"
    assert failed.status_code == 500
    assert recorder.reads() == [("5", "RUNNING", 200), ("6", "RUNNING", 500), ("7", "RUNNING", 200)]
    assert recorder.logs() == [
        ("5", "job 5 is slow"),
        ("6", "job 6 is slow"),
        ("7", "job 7 is slow"),
    ]


@override_settings(
    ROOT_URLCONF=__name__,
    MIDDLEWARE=MIDDLEWARE,
    LIFECYCLE_REQUEST_TASK=f"{__name__}.task_of_header_from_the_orm",
)
async def test_under_asgi_a_task_function_that_uses_the_orm_names_the_task(
    recorder: Recorder,
) -> None:
    # Given a function in settings that names the task with the ORM, and the async stack
    # When a request comes
    answer = await AsyncClient().get("/ajobs/5/", headers={"X-Job": "77"})
    # Then the function ran where the ORM may run, and its task is the view's
    assert answer.content == b"job 5: 77"
    assert recorder.logs() == [("77", "job 5 is slow")]
    # And so does the decorator's, for an async view
    decorated = await AsyncClient().get("/aheader/6/", headers={"X-Job": "78"})
    assert decorated.content == b"job 6: 78"


def test_the_middleware_is_sync_and_async_capable() -> None:
    assert LifecycleMiddleware.sync_capable and LifecycleMiddleware.async_capable


# -- the decorator ----------------------------------------------------------------------------


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
def test_the_decorator_does_it_for_one_view(recorder: Recorder) -> None:
    assert client().get("/plain/3/").status_code == 202
    assert client().get("/plain/4/?missing=1").status_code == 404
    assert recorder.reads() == [("3", "DONE", 202), ("4", "DONE", 404)]
    assert recorder.logs() == [("3", "decorated view of 3"), ("4", "decorated view of 4")]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[])
async def test_the_decorator_takes_async_views(recorder: Recorder) -> None:
    assert (await AsyncClient().get("/aplain/3/")).status_code == 202
    assert recorder.reads() == [("3", "DONE", 202)]


# -- the pure parts ---------------------------------------------------------------------------


def request() -> HttpRequest:
    found = HttpRequest()
    found.META["HTTP_X_JOB"] = "h-1"
    return found


@pytest.mark.parametrize(
    ("spec", "kwargs", "expected"),
    [
        ("task_id", {"task_id": 5}, "5"),
        ("task_id", {"pk": 5}, None),
        ("job_id,pk", {"pk": 5}, "5"),
        (" job_id , pk ", {"job_id": "a", "pk": 5}, "a"),
        ("pk", {"pk": ""}, None),
        (f"{__name__}.task_of_header", {}, "h-1"),
        (f"{__name__}.broken_task_function", {}, None),
        ("no_such_module_here.function", {"task_id": 5}, None),
        (lambda request, kwargs: kwargs["slug"].upper(), {"slug": "ab"}, "AB"),
        (lambda request, kwargs: 12, {}, "12"),
    ],
)
def test_which_task_a_request_is_about(spec: Any, kwargs: dict[str, Any], expected: Any) -> None:
    assert request_task(spec)(request(), kwargs) == expected


@pytest.mark.parametrize(
    ("exc", "status"),
    [(Http404(), 404), (PermissionError(), 500), (RuntimeError(), 500)],
)
def test_an_exception_is_reported_with_djangos_status_for_it(exc: Exception, status: int) -> None:
    assert status_of(exc) == status


def test_django_exceptions_statuses() -> None:
    from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation

    assert [status_of(e) for e in (PermissionDenied(), BadRequest(), SuspiciousOperation())] == [
        403,
        400,
        400,
    ]
