"""Run in a subprocess by ``tests/integration/test_django_client_app.py``, in an environment
with Django, a PostgreSQL driver (psycopg 3 or psycopg 2) and the client: migrate, make two
jobs, then request the views through Django's whole handler and middleware chain. Prints one
JSON object of what the test checks beside the events on RabbitMQ, and waits until RabbitMQ
has confirmed every event."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clientsite.settings")
django.setup()

from clientjobs.models import Delivery, EmailDelivery, Job  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections, reset_queries, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from lifecycle.client.django import read_model, version_of  # noqa: E402
from lifecycle.client.publisher import get_publisher  # noqa: E402


def created(**fields: Any) -> tuple[Job, int]:
    """A job, committed, and the id of the transaction that wrote it."""
    with transaction.atomic():
        job = Job.objects.create(**fields)
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()::text::bigint")
            txid = cursor.fetchone()[0]
    return job, txid


def queries(alias: str) -> list[str]:
    return [q["sql"] for q in connections[alias].queries]


call_command("migrate", verbosity=0)
parent, parent_txid = created(status=Job.Status.DONE, payload={"kind": "parent"})
job, job_txid = created(payload={"kind": "report"}, parent=parent)

client = Client(raise_request_exception=False)
answers: dict[str, Any] = {}

reset_queries()
found = client.get(f"/jobs/{job.pk}/")
answers["detail"] = (found.status_code, found.json())
detail_queries = {"reads": queries("reads"), "default": queries("default")}
found = client.get("/jobs/999999/")
answers["missing"] = found.status_code
found = client.get(f"/jobs/{job.pk}/family/")
answers["family"] = (found.status_code, found.json())
answers["broken"] = client.get(f"/jobs/{job.pk}/broken/").status_code
found = client.get(f"/jobs/{job.pk}/status/")
answers["status_filled"] = (found.status_code, found.json())
with transaction.atomic():
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING)
found = client.get(f"/jobs/{job.pk}/status/")
answers["status_cached"] = (found.status_code, found.json())
answers["start"] = client.get(f"/jobs/{job.pk}/start/").status_code

# Multi-table inheritance: the status lives in the parent's table, and so does the version
# read, even when the child's row was written later
delivery = EmailDelivery.objects.create(address="a@example.org")
with transaction.atomic():
    Delivery.objects.filter(pk=delivery.pk).update(status="SENT")
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        sent_txid = cursor.fetchone()[0]
EmailDelivery.objects.filter(pk=delivery.pk).update(address="b@example.org")
inherited = version_of(read_model(EmailDelivery.objects, delivery.pk))

# Outside any request: reported at once, with 200; its version survives a pickle (a cache)
again = read_model(Job.objects, job.pk)
kept_version = version_of(pickle.loads(pickle.dumps(again)))
try:
    read_model(Job.objects, 999999)
    missing_raises = False
except Job.DoesNotExist:
    missing_raises = True

print(
    json.dumps(
        {
            "driver": connections["default"].Database.__name__,
            "job": job.pk,
            "job_xmin": job_txid % 2**32,
            "parent_xmin": parent_txid % 2**32,
            "answers": answers,
            "detail_queries": detail_queries,
            "version": dataclasses.asdict(kept_version) if kept_version else None,
            "status_after": again.status,
            "delivery": delivery.pk,
            "inherited": dataclasses.asdict(inherited) if inherited else None,
            "inherited_expected": {"xmin": sent_txid % 2**32, "status": "SENT"},
            "instance_fields": sorted(k for k in vars(again) if k.startswith("lifecycle")),
            "missing_raises": missing_raises,
            "confirmed": get_publisher().flush(timeout=15),
        }
    )
)
