"""The Django helpers in this process, on the inspector's own test database and the lab's
model: the async read, the queryset method, a read inside a request's savepoint, and what
``read_row`` returns on Django's own psycopg connection (its loaders, not psycopg's).
``test_django_client_app.py`` runs them in a project of their own, with both drivers."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import connection, connections, transaction

from lifecycle.client import reads
from lifecycle.client.django import LifecycleQuerySet, aread_model, read_model, version_of
from lifecycle.lab.models import Task
from lifecycle.runtime.database import conninfo
from tests.published import Published

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres"),
]


def created() -> tuple[Task, int]:
    with transaction.atomic():
        task = Task.objects.create(config={"mode": "ok", "tags": ["a"]})
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text::bigint")
            txid = cursor.fetchone()[0]
    return task, txid % 2**32


def reported(published: Published) -> list[tuple[str, str | None, int | None]]:
    return [(m["task"], m["status"], m["body"]["xmin"]) for m in published.messages]


async def test_an_async_view_reads_with_aread_model(published: Published) -> None:
    from asgiref.sync import sync_to_async

    try:
        task, xmin = await sync_to_async(created)()
        found = await aread_model(Task.objects, task.id)
        assert found.config == {"mode": "ok", "tags": ["a"]}
        assert reported(published) == [(str(task.id), "PENDING", xmin)]
        with pytest.raises(Task.DoesNotExist):
            await aread_model(Task.objects, uuid.uuid4())
        assert len(published.messages) == 1
    finally:
        # The ORM's thread keeps its connection: close it, or the test database stays in use
        await sync_to_async(connections.close_all)()


def test_a_queryset_method_reads_the_same_way(published: Published) -> None:
    task, xmin = created()
    found = LifecycleQuerySet(model=Task).read(task.id)
    version = version_of(found)
    assert found.pk == task.pk
    assert version is not None and (version.xmin, version.status) == (xmin, "PENDING")
    assert reported(published) == [(str(task.id), "PENDING", xmin)]
    assert version_of(task) is None  # an instance read_model did not read
    # the same statement said which server answered: the primary
    body = published.messages[0]["body"]
    assert (body["standby"], body["replayed_at"]) == (False, None)
    assert not hasattr(found, "lifecycle_standby")  # our annotations are taken off


def test_a_write_in_a_savepoint_is_read_with_the_subtransactions_xmin(
    published: Published,
) -> None:
    # Given a write made in a nested atomic block (ATOMIC_REQUESTS, then a helper's atomic)
    task, _ = created()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text::bigint")
            top = cursor.fetchone()[0] % 2**32
        with transaction.atomic():
            Task.objects.filter(pk=task.pk).update(status="RUNNING")
    # When it is read
    found = read_model(Task.objects, task.pk)
    # Then its version is the savepoint's own transaction id, which no commit carries: the
    # snapshot is what ties the read to its commit (lifecycle.history)
    version = version_of(found)
    assert version is not None and version.status == "RUNNING"
    assert version.xmin is not None and version.xmin != top


def test_read_row_on_djangos_connection_returns_what_its_loaders_make(
    published: Published,
) -> None:
    task, xmin = created()
    # Django's psycopg connection loads jsonb as text (its JSONField decodes it itself)
    connection.ensure_connection()
    on_django = reads.read_row(connection.connection, "lab_task", task.id)
    # A plain psycopg connection keeps psycopg's loaders
    with psycopg.connect(conninfo()) as plain:
        on_psycopg = reads.read_row(plain, "lab_task", task.id)
    assert on_django is not None and on_psycopg is not None
    assert isinstance(on_django["config"], str)
    assert on_psycopg["config"] == {"mode": "ok", "tags": ["a"]}
    # Either way the read is reported with its version
    assert reported(published) == [(str(task.id), "PENDING", xmin)] * 2


def test_a_values_queryset_is_read_as_the_application_asked_without_a_version(
    published: Published,
) -> None:
    # Given a view that reads its job as a dict, or as a tuple (values(), values_list())
    task, _ = created()
    # When it reads through read_model
    as_dict = read_model(Task.objects.values("id", "status"), task.id)
    as_tuple = read_model(Task.objects.values_list("id", "status"), task.id)
    # Then it gets what the queryset's get() gives, with no column of ours in it
    assert as_dict == {"id": task.id, "status": "PENDING"}
    assert as_tuple == (task.id, "PENDING")
    # And no read is reported (a dict or a tuple keeps no version to report it with)
    assert published.messages == []


def test_a_status_property_that_fails_does_not_fail_the_read(
    published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a model whose status is a property of theirs that fails for this row
    task, xmin = created()

    def failing(self: Task) -> str:
        raise LookupError("its state machine lost this row's state")

    monkeypatch.setattr(Task, "state", property(failing), raising=False)
    # When a view reads the row through read_model, naming that status
    found = read_model(Task.objects, task.id, status="state")
    # Then it gets the row (as Task.objects.get would give it), its read reported without
    # a status
    assert found.pk == task.pk
    assert reported(published) == [(str(task.id), None, xmin)]
