"""Where the client sends events: Django's settings when the process runs Django, else the
environment, with the same names and defaults (README: Settings).

Django is never imported here: a process that has not loaded it is not a Django process.
"""

from __future__ import annotations

import os
import sys

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_NAMESPACE = "lifecycle"


def _django_setting(name: str) -> str | None:
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    settings = conf.settings
    try:
        # Django's settings load lazily: a process that names its settings module is a
        # Django process even before anything read them.
        if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
            return None
        value = getattr(settings, name, None)
    except Exception:  # settings that fail to load are the application's business, not ours
        return None
    return value if isinstance(value, str) else None


def setting(name: str, default: str | None = None) -> str | None:
    """A setting of the client: Django's, else the environment's, else ``default``."""
    return _django_setting(name) or os.environ.get(name) or default


def amqp_url() -> str:
    return setting("AMQP_URL", DEFAULT_AMQP_URL) or DEFAULT_AMQP_URL


def namespace() -> str:
    return setting("LIFECYCLE_NAMESPACE", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE


def exchange_name(ns: str | None = None) -> str:
    """The topic exchange every event is published to."""
    return f"{ns or namespace()}.events"
