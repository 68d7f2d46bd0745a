"""The jobs service's settings, read from the environment.

- ``JOBS_DATABASE_URL``: its own PostgreSQL database (``postgres://user:pass@host:port/name``).
- ``AMQP_URL``: RabbitMQ, for Dramatiq and for the lifecycle client.
- ``LIFECYCLE_NAMESPACE``: the inspector's namespace (the dashboard's own).
- ``LIFECYCLE_PROCESS_ROLE``: ``api`` or ``worker``, set by each process (its log records and
  its database connections are named after it).
- ``JOBS_QUEUE``: the Dramatiq queue (``jobs``).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "jobs-service-acceptance-tests-only")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django_dramatiq",
    "jobs",
]

MIDDLEWARE = [
    # First, so the status its reads are reported with is the one the client got.
    "lifecycle.client.django.LifecycleMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "jobsite.urls"
WSGI_APPLICATION = "jobsite.wsgi.application"

ROLE = os.environ.get("LIFECYCLE_PROCESS_ROLE", "api")


def database(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": urllib.parse.unquote(parts.username or ""),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Every request in one transaction, committed when the view returns.
        "ATOMIC_REQUESTS": True,
        # The inspector shows it as each commit's writer.
        "OPTIONS": {"application_name": f"jobs-{ROLE}"},
    }


DATABASES = {"default": database(os.environ["JOBS_DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "jobs",
    }
}

USE_TZ = True
TIME_ZONE = "UTC"

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
JOBS_QUEUE = os.environ.get("JOBS_QUEUE", "jobs")

DRAMATIQ_BROKER = {
    "BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
    "OPTIONS": {"url": AMQP_URL},
    "MIDDLEWARE": [
        "dramatiq.middleware.AgeLimit",
        "dramatiq.middleware.TimeLimit",
        "dramatiq.middleware.Callbacks",
        "dramatiq.middleware.Retries",
        "django_dramatiq.middleware.DbConnectionsMiddleware",
        "lifecycle.client.dramatiq_middleware.LifecycleEvents",
    ],
}

# The task lifecycle inspector (README: Attaching another application, a Django application).
LIFECYCLE_NAMESPACE = os.environ.get("LIFECYCLE_NAMESPACE", "lifecycle")
# The same prefix as `lifecycle capture install public.jobs_job --key-prefix django-jobs:`:
# job 5 is django-jobs:5 on the inspector, never another application's task 5.
LIFECYCLE_KEY_PREFIX = "django-jobs:"
# Which URL kwarg names the job a request is about (the middleware's task context).
LIFECYCLE_REQUEST_TASK = "job_id"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # WARNING+ records logged while a job is current become log events on its timeline;
        # its role comes from LIFECYCLE_PROCESS_ROLE.
        "lifecycle": {"class": "lifecycle.client.LifecycleLogHandler"},
    },
    "root": {"handlers": ["console", "lifecycle"], "level": "INFO"},
    "loggers": {
        "pika": {"level": "WARNING"},
    },
}
