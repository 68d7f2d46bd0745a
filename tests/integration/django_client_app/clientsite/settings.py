"""A small Django project attached the way README section 3 says, for
``tests/integration/test_django_client_app.py``: its own database (``CLIENT_APP_DATABASE_URL``),
reads routed to a second alias of it, the client's middleware, log handler and key prefix.
It runs with psycopg 3 or psycopg 2, whichever its environment has."""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

SECRET_KEY = "django-client-app-tests-only"
DEBUG = True  # connection.queries, which the exercise checks
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True

INSTALLED_APPS = ["clientjobs"]
MIDDLEWARE = ["lifecycle.client.django.LifecycleMiddleware"]
ROOT_URLCONF = "clientsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def database(url: str, role: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": urllib.parse.unquote(parts.username or ""),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": {"application_name": f"client-app-{role}"},
    }


# Writes go to "default", reads to "reads" (the same database: a stand-in for a replica), so
# the exercise can see that read_model's query went where the router sent it.
DATABASES = {
    "default": database(os.environ["CLIENT_APP_DATABASE_URL"], "writer"),
    "reads": database(os.environ["CLIENT_APP_DATABASE_URL"], "reader"),
}
DATABASE_ROUTERS = ["clientjobs.routers.ReadsRouter"]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# The task lifecycle inspector's client (README: Attaching another application, 3).
AMQP_URL = os.environ["AMQP_URL"]
LIFECYCLE_NAMESPACE = os.environ["LIFECYCLE_NAMESPACE"]
LIFECYCLE_KEY_PREFIX = "client-app:"
LIFECYCLE_REQUEST_TASK = "job_id"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "lifecycle": {"()": "lifecycle.client.LifecycleLogHandler"},
    },
    "root": {"handlers": ["lifecycle"], "level": "WARNING"},
}
