"""Where the client sends events: Django's settings when the process runs Django, else the
environment, with the same names and defaults (README: Settings).

Django is never imported here: a process that has not loaded it is not a Django process.
"""

from __future__ import annotations

import os
import sys
import urllib.parse

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
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # LIFECYCLE_BUFFER_EVENTS = 50_000
    return value if isinstance(value, str) else None


def setting(name: str, default: str | None = None) -> str | None:
    """A setting of the client: Django's, else the environment's, else ``default``."""
    return _django_setting(name) or os.environ.get(name) or default


def amqp_url() -> str:
    return setting("AMQP_URL", DEFAULT_AMQP_URL) or DEFAULT_AMQP_URL


def namespace() -> str:
    return setting("LIFECYCLE_NAMESPACE", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE


_key_prefix: str | None = None  # LIFECYCLE_KEY_PREFIX, once read


def key_prefix() -> str:
    """``LIFECYCLE_KEY_PREFIX`` (default empty), read once per process: every event the
    client publishes asks for it. ``forget()`` makes the next call read it again."""
    global _key_prefix
    prefix = _key_prefix
    if prefix is None:
        prefix = _key_prefix = setting("LIFECYCLE_KEY_PREFIX") or ""
    return prefix


def task_key(raw: object) -> str:
    """The key the inspector knows a task by: the application's own key (``raw``) after
    ``LIFECYCLE_KEY_PREFIX``, the same prefix ``capture install --key-prefix`` makes its
    trigger write, so that two applications' task 5 stay two tasks. Every event the client
    publishes goes through here once; nothing of the inspector's own does."""
    key = str(raw)
    prefix = _key_prefix if _key_prefix is not None else key_prefix()
    return prefix + key if prefix else key


def forget() -> None:
    """Read the cached settings again on next use (a test, Django's ``override_settings``)."""
    global _key_prefix
    _key_prefix = None


def exchange_name(ns: str | None = None) -> str:
    """The topic exchange every event is published to."""
    return f"{ns or namespace()}.events"


def redact_url(url: str) -> str:
    """``url`` as the client may print, log or show it in a repr: its user information
    (a password, or a token given as the user name) and any query value or fragment that
    may be a secret replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.partition(":")[0] if ":" in userinfo else "***"
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
        query = ";".join(
            "&".join(_redact_pair(pair) for pair in chunk.split("&"))
            for chunk in parts.query.split(";")
        )
        fragment = "***" if parts.fragment else ""
        return urllib.parse.urlunsplit(
            parts._replace(netloc=netloc, query=query, fragment=fragment)
        )
    except ValueError:
        return "<a URL that could not be parsed>"


def _redact_pair(pair: str) -> str:
    key, sep, _ = pair.partition("=")
    secret = any(word in urllib.parse.unquote(key).lower() for word in _SECRET_WORDS)
    return f"{key}{sep}***" if sep and secret else pair


_SECRET_WORDS = ("password", "passwd", "pwd", "token", "secret", "key", "auth", "sig", "credential")
