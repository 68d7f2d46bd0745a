"""The lab's JSON API: create a task (and enqueue it), read a task."""

from __future__ import annotations

import json
import logging
import time
import uuid

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import cache_page
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from lifecycle.client import report_read, task_context
from lifecycle.lab import access, limits
from lifecycle.lab.config import ConfigError, validate_config
from lifecycle.lab.models import Task
from lifecycle.lab.reads import NoReplica, read_task
from lifecycle.runtime.http import cross_origin, json_error

logger = logging.getLogger("lifecycle.lab.api")

# With enqueue_before_commit, how long the API keeps its transaction open after sending.
ENQUEUE_BEFORE_COMMIT_DELAY = 0.5


@csrf_exempt  # access.refusal checks a session's CSRF token; the probe's key and tokens need none
@require_POST
def create_task(request: HttpRequest) -> JsonResponse:
    # Only whoever may start a run, or the probe (lifecycle.lab.access): a task is real work
    # in the worker. Another site's page must not start tasks in a visitor's browser either
    # (a text/plain POST needs no preflight, and the redelivery switch kills the worker).
    if cross_origin(request):
        return json_error(403, "cross-origin requests may not create lab tasks")
    refused = access.refusal(request)
    if refused is not None:
        return refused
    try:
        payload = json.loads(request.body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return json_error(400, f"request body is not valid JSON: {exc}")
    if not isinstance(payload, dict):
        return json_error(400, 'request body must be a JSON object like {"config": {...}}')
    unknown = sorted(set(payload) - {"config"})
    if unknown:
        return json_error(400, f"unknown field(s): {', '.join(unknown)}; expected only 'config'")
    try:
        config = validate_config(payload.get("config", {}))
    except ConfigError as exc:
        return json_error(400, f"invalid config: {exc}")
    if config.get("replica_read") and not settings.LAB_REPLICA_URL:
        return json_error(
            400,
            "invalid config: replica_read needs a hot standby, and LAB_REPLICA_URL is not set "
            "(python manage.py lifecycle standby start)",
        )

    from lifecycle.lab.actors import run_task

    task_id = uuid.uuid4()
    with task_context(str(task_id)):
        try:
            with transaction.atomic():
                limits.check(config)
                task = Task.objects.create(id=task_id, config=config)
                if config.get("enqueue_before_commit"):
                    # BUG enqueue_before_commit: the worker can get the message before the
                    # row exists for it.
                    run_task.send(str(task.id))
                    time.sleep(ENQUEUE_BEFORE_COMMIT_DELAY)
                else:
                    transaction.on_commit(lambda: run_task.send(str(task_id)), robust=False)
        except limits.Busy as exc:
            return exc.response()
        except ConfigError as exc:
            return json_error(400, f"invalid config: {exc}")
        except Exception as exc:  # the broker is down: say so instead of a bare 500
            logger.error("could not create or enqueue task %s: %s", task_id, exc)
            return json_error(503, f"could not enqueue the task: {exc}")
    response = JsonResponse(task.as_json(), status=201)
    response["Location"] = f"/lab/api/tasks/{task.id}"
    return response


READ_CONFIRM = 0.05  # seconds a lab read waits for RabbitMQ's confirm of its event


@require_GET
def get_task(request: HttpRequest, task_id: str) -> JsonResponse:
    refused = access.refusal(request)
    if refused is not None:
        return refused
    try:
        key = str(uuid.UUID(task_id))
    except ValueError:
        return json_error(404, f"no task {task_id!r}: task ids are UUIDs")
    with task_context(key):
        try:
            result = read_task(key)
        except NoReplica as exc:
            return json_error(503, str(exc))
        if result is None:
            return json_error(404, f"no task {key}")
        report_read(
            task=key,
            status=result.task["status"],
            xmin=result.xmin,
            snapshot=result.snapshot,
            standby=result.standby,
            replayed_at=result.replayed_at,
            client=request.headers.get("X-Lifecycle-Client") or request.META.get("REMOTE_ADDR"),
            path=request.path,
            # The read is RabbitMQ's before its answer leaves: a web process killed right
            # after answering (the chaos suite's kill-web) loses no read its client saw.
            confirm=READ_CONFIRM,
        )
        return JsonResponse(result.task)


# How long the cached poll URL's answers are kept (the cached-response scenario).
RESPONSE_CACHE_SECONDS = 2
_cached_get_task = cache_page(RESPONSE_CACHE_SECONDS, key_prefix="lab-task")(get_task)


@require_GET
def get_task_cached(request: HttpRequest, task_id: str) -> HttpResponse:
    """BUG cached-response: the same read behind Django's cache framework (``cache_page``):
    a poll within a few seconds of the last one the API ran gets that one's body, and the
    API never runs. Access is checked first, so a cached body goes to no one else."""
    refused = access.refusal(request)
    if refused is not None:
        return refused
    return _cached_get_task(request, task_id)
