"""The client in a Django application: reads through the ORM that know their version, and a
middleware that ties a request to its task.

    from lifecycle.client.django import read_model, version_of, report_cached

    job = read_model(Job.objects, pk)        # Job.objects.get(pk=pk), its read reported

- ``read_model`` reads through Django's own queryset, so routers, ``connection.queries``,
  Django's field conversions and psycopg 2 or 3 all apply; the row's ``xmin`` and the
  statement's ``pg_current_snapshot()`` come in the same statement, as two annotations.
- ``version_of(instance)`` is what that read returned and saw (a ``ReadVersion``): keep it
  with an answer you cache, and report each hit with ``report_cached(key, version)``.
- ``LifecycleMiddleware`` (``MIDDLEWARE``) or ``@reports_reads`` (one view): the view runs
  in ``task_context`` of the task its URL names (``LIFECYCLE_REQUEST_TASK``), and its reads
  are reported once the response is known, with the response's status.

The only module of the client that imports Django; the rest works without it.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import (
    BadRequest,
    FieldDoesNotExist,
    PermissionDenied,
    SuspiciousOperation,
)
from django.core.signals import setting_changed
from django.db import connections
from django.db.models import (
    BigIntegerField,
    BooleanField,
    DateTimeField,
    Expression,
    F,
    Manager,
    Model,
    QuerySet,
    TextField,
)
from django.db.models.expressions import RawSQL
from django.http import Http404, HttpRequest
from django.http.multipartparser import MultiPartParserError
from django.urls import resolve

from lifecycle.client import config
from lifecycle.client.context import task_context
from lifecycle.client.reads import (
    REPLAYED,
    SNAPSHOT,
    STANDBY,
    VERSION,
    DeferredReads,
    ReadVersion,
    deferred_reads,
    report_cached,
    report_read,
    status_text,
)

__all__ = [
    "LifecycleMiddleware",
    "LifecycleQuerySet",
    "ReadVersion",
    "aread_model",
    "read_model",
    "report_cached",
    "report_read",
    "reports_reads",
    "version_of",
    "versioned",
]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Model)
V = TypeVar("V", bound=Callable[..., Any])
RequestTask = Callable[[HttpRequest, dict[str, Any]], str | None]

XMIN_NAME = "lifecycle_xmin"  # the annotations read_model adds, taken off the instance after
SNAPSHOT_NAME = "lifecycle_snapshot"
STANDBY_NAME = "lifecycle_standby"  # a hot standby answered, and how far it had replayed
REPLAYED_NAME = "lifecycle_replayed_at"
_VERSION = "_lifecycle_read"  # where an instance keeps its ReadVersion (pickled with it)
DEFAULT_REQUEST_TASK = "task_id"


# -- reads through the ORM ------------------------------------------------------------------


class RowVersion(Expression):
    """``<alias>.xmin`` of the table row that holds the model's field ``holder``.

    Qualified by the alias Django gave that table in this very query, so it holds with
    ``select_related`` joins, self-joins, and multi-table inheritance (the parent's table,
    where the status lives, is the row the capture watches)."""

    def __init__(self, holder: str) -> None:
        super().__init__(output_field=BigIntegerField())
        self.holder = holder
        self.table_alias: str | None = None

    def resolve_expression(
        self,
        query: Any = None,
        allow_joins: bool = True,
        reuse: Any = None,
        summarize: bool = False,
        for_save: bool = False,
    ) -> RowVersion:
        resolved = self.copy()
        column = F(self.holder).resolve_expression(query, allow_joins, reuse, summarize, for_save)
        resolved.table_alias = cast(Any, column).alias
        return resolved

    def relabeled_clone(self, change_map: Mapping[str, str]) -> RowVersion:
        # The query became a subquery and its tables were renamed: follow ours.
        clone = self.copy()
        if self.table_alias is not None:
            clone.table_alias = change_map.get(self.table_alias, self.table_alias)
        return clone

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        if self.table_alias is None:
            raise ValueError("RowVersion used before it was resolved against a query")
        table = compiler.quote_name_unless_alias(self.table_alias)
        return f"{table}.{VERSION}", []


def versioned(queryset_or_manager: Any, status: str = "status") -> QuerySet[Any]:
    """The queryset with the row's version (of the table that holds ``status``) and the
    statement's snapshot as two annotations; unchanged on a database that is not
    PostgreSQL (SQLite in a project's unit tests), whose reads are then reported without."""
    queryset: QuerySet[Any] = (
        queryset_or_manager.all()
        if isinstance(queryset_or_manager, Manager)
        else queryset_or_manager
    )
    if connections[queryset.db].vendor != "postgresql":
        return queryset
    if getattr(queryset, "_fields", None) is not None:
        # values() or values_list(): its rows are the application's own dicts and tuples,
        # and a column of ours would end up in them (read_model reports no such read)
        return queryset
    try:
        field = queryset.model._meta.get_field(status)
        holder = status if getattr(field, "concrete", False) else "pk"
    except FieldDoesNotExist:  # a property, say: the version of the row the pk names
        holder = "pk"
    return queryset.annotate(
        **{
            XMIN_NAME: RowVersion(holder),
            SNAPSHOT_NAME: RawSQL(SNAPSHOT, (), output_field=TextField()),
            STANDBY_NAME: RawSQL(STANDBY, (), output_field=BooleanField()),
            REPLAYED_NAME: RawSQL(REPLAYED, (), output_field=DateTimeField()),
        }
    )


def read_model(
    queryset_or_manager: QuerySet[M] | Manager[M],
    pk: object,
    *,
    status: str = "status",
    client: str | None = None,
    key_field: str = "pk",
) -> M:
    """``queryset.get(pk=pk)`` (``Model.DoesNotExist`` when there is none), its read
    reported with the row's version and snapshot and the instance's ``status`` attribute
    (a ``TextChoices`` member as its value). The task key is the instance's ``key_field``
    (the column ``capture install --key`` names)."""
    instance = versioned(queryset_or_manager, status).get(pk=pk)
    return _reported(instance, status, client, key_field)


async def aread_model(
    queryset_or_manager: QuerySet[M] | Manager[M],
    pk: object,
    *,
    status: str = "status",
    client: str | None = None,
    key_field: str = "pk",
) -> M:
    """``read_model`` for an ``async def`` view: ``await queryset.aget(pk=pk)``."""
    instance = await versioned(queryset_or_manager, status).aget(pk=pk)
    return _reported(instance, status, client, key_field)


def version_of(instance: object) -> ReadVersion | None:
    """What ``read_model`` read of this instance: the row's version, the snapshot and the
    status (None for an instance it did not read). It travels with the instance through
    pickling (Django's cache); after ``refresh_from_db()`` or ``save()`` it still names the
    read, not the row as it is now."""
    found = getattr(instance, _VERSION, None)
    return found if isinstance(found, ReadVersion) else None


def _reported(instance: M, status: str, client: str | None, key_field: str) -> M:
    if not isinstance(instance, Model):  # a values() dict or values_list() tuple
        logger.debug("lifecycle: a read of %s rows is not reported", type(instance).__name__)
        return instance
    fields = instance.__dict__
    xmin, snapshot = fields.pop(XMIN_NAME, None), fields.pop(SNAPSHOT_NAME, None)
    standby, replayed = fields.pop(STANDBY_NAME, None), fields.pop(REPLAYED_NAME, None)
    try:
        status_value = status_text(getattr(instance, status, None))
    except Exception:  # a status property of theirs that fails: the view's to meet, not ours
        logger.debug("lifecycle: the status %r of the read could not be had", status, exc_info=True)
        status_value = None
    version = ReadVersion(
        xmin=xmin if isinstance(xmin, int) else None,
        snapshot=snapshot if isinstance(snapshot, str) else None,
        status=status_value,
    )
    setattr(instance, _VERSION, version)
    try:
        key = getattr(instance, key_field)
    except Exception:  # a key_field the model lacks: their mistake must not fail the view
        logger.debug("lifecycle: %r has no %r to report its read by", instance, key_field)
        return instance
    report_read(
        key,
        version.status,
        xmin=version.xmin,
        snapshot=version.snapshot,
        client=client,
        standby=standby if isinstance(standby, bool) else None,
        replayed_at=replayed if isinstance(replayed, datetime) else None,
    )
    return instance


class LifecycleQuerySet(QuerySet[M]):
    """``Job.objects.read(pk)``: ``read_model`` as a queryset method. Use it as the model's
    manager: ``objects = LifecycleQuerySet.as_manager()``, or mix it into your own."""

    lifecycle_status = "status"  # the status attribute; a subclass may name another

    def read(self, pk: object, *, client: str | None = None) -> M:
        return read_model(self, pk, status=self.lifecycle_status, client=client)

    async def aread(self, pk: object, *, client: str | None = None) -> M:
        return await aread_model(self, pk, status=self.lifecycle_status, client=client)


# -- which task a request is about ----------------------------------------------------------


def request_task(spec: str | RequestTask | None = None) -> RequestTask:
    """The function that names a request's task from its URL kwargs.

    ``spec``: a function ``(request, view_kwargs) -> str | None``, or its dotted path, or
    the URL kwarg names to look for, separated by commas (the first one present wins);
    ``None``: the setting ``LIFECYCLE_REQUEST_TASK``, default ``task_id``. The function
    returned never raises: anything that goes wrong names no task."""
    if spec is None:
        spec = config.setting("LIFECYCLE_REQUEST_TASK", DEFAULT_REQUEST_TASK)
    if callable(spec):
        return _guarded(spec, theirs=True)
    spec = (spec or DEFAULT_REQUEST_TASK).strip()
    if "." in spec:  # a kwarg name has no dot: a dotted path
        return _guarded(_imported(spec), theirs=True)
    names = tuple(name.strip() for name in spec.split(",") if name.strip())
    # Guarded too: a kwarg's value is whatever a converter of theirs made (a model instance
    # whose str() fails, say), and the view may never make it text.
    return _guarded(functools.partial(_from_kwargs, names=names))


def _from_kwargs(request: HttpRequest, kwargs: dict[str, Any], *, names: tuple[str, ...]) -> Any:
    for name in names:
        value = kwargs.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def _imported(path: str) -> RequestTask:
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
        if not callable(found):
            raise TypeError(f"{path} is not a function")
    except Exception as exc:  # theirs to fix; until then, requests name no task
        logger.warning(
            "lifecycle: LIFECYCLE_REQUEST_TASK=%r is unusable (%s: %s); requests name no task",
            path,
            type(exc).__name__,
            exc,
        )
        return lambda request, kwargs: None
    return cast(RequestTask, found)


def _guarded(function: RequestTask, *, theirs: bool = False) -> RequestTask:
    @functools.wraps(function)
    def guarded(request: HttpRequest, kwargs: dict[str, Any]) -> str | None:
        try:
            key = function(request, kwargs)
        except Exception:
            logger.debug("lifecycle: the request's task could not be named", exc_info=True)
            return None
        return None if key is None or key == "" else str(key)

    # The application's own function may use the ORM, or take its time: an async request
    # runs it where a sync view would run (``_atask``), not on the event loop.
    guarded.theirs = theirs  # type: ignore[attr-defined]
    return guarded


async def _atask(task_of: RequestTask, request: HttpRequest, kwargs: dict[str, Any]) -> str | None:
    """``task_of(request, kwargs)`` from async code."""
    if getattr(task_of, "theirs", False):
        return cast("str | None", await sync_to_async(task_of)(request, kwargs))
    return task_of(request, kwargs)


def url_kwargs(request: HttpRequest) -> dict[str, Any]:
    """The kwargs the request's view will get (resolved as Django will resolve them: the
    middleware runs before Django resolves the URL); empty when nothing matches."""
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Exception:  # Resolver404, or a urlconf of theirs that fails: no task
        return {}
    return dict(match.kwargs)


def status_of(exc: BaseException) -> int:
    """The status Django answers an exception a view raised with."""
    if isinstance(exc, Http404):
        return 404
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, MultiPartParserError | BadRequest | SuspiciousOperation):
        return 400
    return 500


@contextmanager
def _request_scope(task: str | None) -> Iterator[DeferredReads]:
    with task_context(task) if task is not None else nullcontext(), deferred_reads() as held:
        yield held


async def _areport(held: DeferredReads, http_status: int) -> None:
    if held.waits:  # a read asked to wait for RabbitMQ: not on the event loop's thread
        await sync_to_async(held.report, thread_sensitive=False)(http_status)
    else:
        held.report(http_status)


# -- the middleware and the decorator -------------------------------------------------------


class LifecycleMiddleware:
    """Ties each request to its task: the view's WARNING+ log records go to the task's
    timeline (``task_context``), and the reads it reports are published once the response
    is known, with the response's status (500 for an exception Django turned into one).

    Put it first in ``MIDDLEWARE``, so the status it reports is the one the client got.
    Which task a request is about: ``LIFECYCLE_REQUEST_TASK`` (see ``request_task``)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.task_of = request_task()
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def task(self, request: HttpRequest) -> str | None:
        return self.task_of(request, url_kwargs(request))

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        with _request_scope(self.task(request)) as held:
            try:
                response = self.get_response(request)
            except BaseException:
                held.report(500)
                raise
        held.report(getattr(response, "status_code", 500))
        return response

    async def __acall__(self, request: HttpRequest) -> Any:
        task = await _atask(self.task_of, request, url_kwargs(request))
        with _request_scope(task) as held:
            try:
                response = await self.get_response(request)
            except BaseException:
                await _areport(held, 500)
                raise
        await _areport(held, getattr(response, "status_code", 500))
        return response


def reports_reads(view: V | None = None, *, task: str | RequestTask | None = None) -> Any:
    """``LifecycleMiddleware`` for one view (sync or ``async def``): ``@reports_reads`` or
    ``@reports_reads(task="job_id")``. ``task`` as in ``request_task``; default: the
    setting. An exception the view raises is reported with the status Django will answer
    it with (``Http404``: 404, ``PermissionDenied``: 403, else 500)."""

    def decorate(view: V) -> V:
        task_of: list[RequestTask] = []  # made at the first request: settings are ready

        def task_for(request: HttpRequest, kwargs: dict[str, Any]) -> str | None:
            if not task_of:
                task_of.append(request_task(task))
            return task_of[0](request, kwargs)

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def run_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if not task_of:
                    task_of.append(request_task(task))
                with _request_scope(await _atask(task_of[0], request, kwargs)) as held:
                    try:
                        response = await view(request, *args, **kwargs)
                    except BaseException as exc:
                        await _areport(held, status_of(exc))
                        raise
                await _areport(held, getattr(response, "status_code", 500))
                return response

            return cast(V, run_async)

        @functools.wraps(view)
        def run(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            with _request_scope(task_for(request, kwargs)) as held:
                try:
                    response = view(request, *args, **kwargs)
                except BaseException as exc:
                    held.report(status_of(exc))
                    raise
            held.report(getattr(response, "status_code", 500))
            return response

        return cast(V, run)

    return decorate(view) if view is not None else decorate


def _settings_changed(setting: str, **kwargs: Any) -> None:
    if setting == "LIFECYCLE_KEY_PREFIX":
        config.forget()


setting_changed.connect(_settings_changed, dispatch_uid="lifecycle.client.django")
