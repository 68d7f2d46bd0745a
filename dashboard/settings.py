"""Settings for the lifecycle inspector, read from the environment (see README: Settings)."""

from __future__ import annotations

import os
import secrets
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url

from lifecycle.client import config as client_config
from lifecycle.store.retention import parse_age

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


ON = frozenset({"1", "true", "yes", "on"})
OFF = frozenset({"0", "false", "no", "off"})


def env_bool(name: str, default: bool) -> bool:
    """An on/off setting: ``on``/``true``/``yes``/``1`` or ``off``/``false``/``no``/``0``, in
    any case; unset or empty, ``default``. Anything else stops every process at start-up: a
    misspelt ``LIFECYCLE_HTTPS=ture`` must not quietly mean off."""
    text = os.environ.get(name, "")
    value = text.strip().lower()
    if not value:
        return default
    if value in ON:
        return True
    if value in OFF:
        return False
    raise ValueError(
        f"{name} must be on or off (on, true, yes, 1; off, false, no, 0), not {text!r}"
    )


def env_int(name: str, default: int, minimum: int = 1) -> int:
    """A whole number of at least ``minimum``; anything else stops every process at
    start-up, saying which setting and why."""
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} is {value}: at least {minimum}")
    return value


def header_timeout(text: str) -> float:
    """``LIFECYCLE_HEADER_TIMEOUT``: seconds, more than 0 and at most 300."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"LIFECYCLE_HEADER_TIMEOUT must be a number of seconds, not {text!r}"
        ) from None
    if not 0 < value <= 300:
        raise ValueError(f"LIFECYCLE_HEADER_TIMEOUT is {text}: more than 0, at most 300 s")
    return value


def database_from_url(url: str) -> dict[str, Any]:
    """``postgres://user:pass@host:port/name?application_name=x`` as Django's dict; the
    query's parameters become libpq options, as text."""
    if urlsplit(url).scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must start with postgres://, got {_without_password(url)}")
    db: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=0))
    options: dict[str, str] = {}
    for key, value in (db.get("OPTIONS") or {}).items():
        if isinstance(value, list):
            raise ValueError(f"DATABASE_URL gives the option {key!r} more than once")
        # dj-database-url turns "5" into 5 and "true" into True; libpq wants the text.
        options[key] = str(value).lower() if isinstance(value, bool) else str(value)
    db["NAME"] = db.get("NAME") or "lifecycle"
    db["PORT"] = str(db.get("PORT") or "")
    db["OPTIONS"] = options
    db["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}
    # A connection kept between requests (CONN_MAX_AGE) is checked before it is reused, so
    # a PostgreSQL restart costs one reconnect, not errors.
    db["CONN_HEALTH_CHECKS"] = True
    return db


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return repr(parts._replace(netloc=netloc).geturl())


def retention_from(text: str) -> timedelta | None:
    """``LIFECYCLE_RETENTION``: how long events are kept (``30d``, ``12h``, ``2w``); empty
    keeps everything. A bad value stops every process at start-up, saying why."""
    if not text.strip():
        return None
    try:
        return parse_age(text)
    except ValueError as exc:
        raise ValueError(f"LIFECYCLE_RETENTION: {exc}") from None


def own_address(host: str, port: int) -> str:
    """The web server's own address, as a process on this machine reaches it: daphne bound
    to every interface (``0.0.0.0``, ``::``) answers on the loopback."""
    host = host.strip("[]")
    if host in {"", "0.0.0.0"}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def lab_base_url(text: str, host: str, port: int) -> str:
    """``LAB_BASE_URL``: an http(s) URL without user, query or fragment; empty, the web
    server's own address (``HOST``, ``PORT``). A bad value stops every process at start-up."""
    url = text.strip()
    if not url:
        return own_address(host, port)
    if not _plain_http_url(url):
        raise ValueError(
            "LAB_BASE_URL must be an http:// or https:// URL such as http://127.0.0.1:8000"
            f" (no user, query or fragment), not {text!r}"
        )
    return url.rstrip("/")


def _plain_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0  # .port raises for "x:abc", "x:99999"
    except ValueError:
        return False
    return (
        parts.scheme in {"http", "https"}
        and bool(parts.hostname)
        and port_ok
        and not (parts.query or parts.fragment or parts.username is not None)
        and not any(c.isspace() for c in url)
    )


HSTS_MAX = 63_072_000  # two years: what the HSTS preload list asks for, at most


def hsts_seconds(text: str, https: bool) -> int:
    """``LIFECYCLE_HSTS_SECONDS``: how long browsers keep to https once told (0: not told);
    empty, a year. Only behind TLS: set without ``LIFECYCLE_HTTPS``, or not a whole number
    of seconds, it stops every process at start-up."""
    seconds = text.strip()
    if not seconds:
        return 31_536_000 if https else 0
    if not https:
        raise ValueError("LIFECYCLE_HSTS_SECONDS is set but LIFECYCLE_HTTPS is off: set both")
    if not (seconds.isascii() and seconds.isdigit()):
        raise ValueError(f"LIFECYCLE_HSTS_SECONDS must be a whole number of seconds, not {text!r}")
    if int(seconds) > HSTS_MAX:
        raise ValueError(
            f"LIFECYCLE_HSTS_SECONDS is {seconds}: at most {HSTS_MAX} (two years), since a "
            "browser told keeps to https that long whatever this server says later"
        )
    return int(seconds)


def trusted_origins(text: str, https: bool) -> list[str]:
    """``LIFECYCLE_TRUSTED_ORIGINS``: the https origins other than the request's own host
    whose pages may post forms and open websockets here (``https://host[:port]``, separated
    by commas). Only behind TLS; a bad one stops every process at start-up."""
    origins = [o.strip() for o in text.split(",") if o.strip()]
    if origins and not https:
        raise ValueError("LIFECYCLE_TRUSTED_ORIGINS is set but LIFECYCLE_HTTPS is off: set both")
    for origin in origins:
        if not (
            _plain_http_url(origin)
            and origin.startswith("https://")
            and "*" not in origin
            and not urlsplit(origin).path
        ):
            raise ValueError(
                "LIFECYCLE_TRUSTED_ORIGINS: each origin must be https://host or"
                f" https://host:port (no path, user, query or wildcard), not {origin!r}"
            )
    # As a browser sends it: lower case, without the default port.
    return [o.lower().removesuffix(":443") for o in origins]


def secret_key(path: Path) -> str:
    """The installation's own key: made at random on first start and kept in ``path``
    (readable by its owner only), so that sessions outlive a restart and no two
    installations share a key. SECRET_KEY in the environment wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Made before, or by another process of the stack a moment ago: wait for its text.
        for _ in range(100):
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty: delete it, or set SECRET_KEY") from None
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


SECRET_KEY = os.environ.get("SECRET_KEY") or secret_key(BASE_DIR / "var" / "secret_key")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [
    h for h in env("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver").split(",") if h
]

DATABASE_URL = env("DATABASE_URL", "postgres://root@127.0.0.1:5432/lifecycle")
DATABASES = {"default": database_from_url(DATABASE_URL)}
# Which process this is (set by `lifecycle up` for each child). It becomes the connection's
# application_name, which the capture trigger records as the writer of each commit.
PROCESS_ROLE = env("LIFECYCLE_PROCESS_ROLE", "django")
DATABASES["default"]["OPTIONS"].setdefault("application_name", f"lifecycle-{PROCESS_ROLE}")
# The web process runs every request and websocket step that touches the database in its
# one database thread (thread-sensitive): a connection kept between them spares each one
# a reconnect (300 pages opened at once made 300 and more), checked before reuse (above).
if PROCESS_ROLE == "web":
    DATABASES["default"]["CONN_MAX_AGE"] = 60
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AMQP_URL = env("AMQP_URL", client_config.DEFAULT_AMQP_URL)
# Prefix of every RabbitMQ name the project declares (exchange, queues), so that several
# installations, or a test run beside `make run`, share one RabbitMQ without crossing.
LIFECYCLE_NAMESPACE = env("LIFECYCLE_NAMESPACE", client_config.DEFAULT_NAMESPACE)
LAB_QUEUE = f"{LIFECYCLE_NAMESPACE}.lab"

HOST = env("HOST", "127.0.0.1")
PORT = int(env("PORT", "8000"))
# This node's name in a deployment of several (lifecycle/nodes/election.py: who holds follow and
# maintain); by default its host and web port.
LIFECYCLE_NODE = env("LIFECYCLE_NODE", "") or f"{socket.gethostname()}:{PORT}"
# Where the probe sends a scenario's relative URLs (the lab's), whoever starts the run: the
# UI, the JSON API or the CLI. Never a request's Host header: that would let a client send
# the probe, with the scenario's body and headers, anywhere, and forge its verdict.
LAB_BASE_URL = lab_base_url(os.environ.get("LAB_BASE_URL") or "", HOST, PORT)
WORKER_THREADS = int(env("WORKER_THREADS", "8"))
# The lab's budget (lifecycle.lab.limits): seconds of sleep its unfinished tasks may owe the
# worker at once, and the seconds between two tasks with the redelivery switch (each kills
# the worker process). Past either, creating a task is a 429.
LAB_SLEEP_BUDGET = float(env("LAB_SLEEP_BUDGET", "60"))
LAB_REDELIVERY_INTERVAL = float(env("LAB_REDELIVERY_INTERVAL", "5"))
# A hot standby of the database (README: The lab): the replica-read scenario's API reads its
# tasks there. Empty, that scenario is listed as unavailable, with the command below.
LAB_REPLICA_URL = os.environ.get("LAB_REPLICA_URL", "")
# `lifecycle standby start|stop|status`: where it makes the standby, its port, and how far
# behind the primary its replay is held, so a stale read shows every time.
LIFECYCLE_STANDBY_DIR = env("LIFECYCLE_STANDBY_DIR", str(BASE_DIR / "var" / "standby"))
LIFECYCLE_STANDBY_PORT = env_int("LIFECYCLE_STANDBY_PORT", 5433)
LIFECYCLE_STANDBY_DELAY = env("LIFECYCLE_STANDBY_DELAY", "1s")
# The scenario files (README: Scenario files), separated by ":": their scenarios fill the
# scenario panel and their [lifecycles] describe the captured tables. A bad file stops every
# process at start-up, naming the file, the line and the reason.
LIFECYCLE_SCENARIOS = env(
    "LIFECYCLE_SCENARIOS",
    str(BASE_DIR / "lifecycle" / "lab" / "scenarios.toml")
    if env_bool("LIFECYCLE_LAB", True)
    else "",
)
# Dotted path of a (message) -> str function naming the task a Dramatiq message is about.
LIFECYCLE_TASK_KEY = os.environ.get("LIFECYCLE_TASK_KEY") or None

# Anyone may read pages, permalinks and websockets (never write): for a trusted network.
LIFECYCLE_PUBLIC_READ = env_bool("LIFECYCLE_PUBLIC_READ", False)
# Live websockets one session (or, with public read, one client address) may hold open in
# a web process; the next one is closed at once with 4429 and a reason (README: Settings).
LIFECYCLE_WS_PER_SESSION = int(env("LIFECYCLE_WS_PER_SESSION", "20"))
if LIFECYCLE_WS_PER_SESSION < 1:
    raise ValueError(f"LIFECYCLE_WS_PER_SESSION is {LIFECYCLE_WS_PER_SESSION}: at least 1")
# off: no lab at all (no app, no URLs, no worker, no scenarios of its own).
LIFECYCLE_LAB = env_bool("LIFECYCLE_LAB", True)
# Events older than this are pruned by `lifecycle maintain` (README: Partitions and retention).
LIFECYCLE_RETENTION = retention_from(env("LIFECYCLE_RETENTION", ""))
# Heavy exports at a time per web process (a long history's OTLP trace or JSON page); one
# more is answered 429 with Retry-After (README: JSON API).
LIFECYCLE_EXPORTS = max(1, int(env("LIFECYCLE_EXPORTS", "4")))
# Seconds a client has to send a request's headers to `python -m dashboard.serve` (the web
# process `lifecycle up` starts): later, 408 and closed (README: Request bounds).
LIFECYCLE_HEADER_TIMEOUT = header_timeout(env("LIFECYCLE_HEADER_TIMEOUT", "10"))
# Events one token (or session user) may post to POST /api/events in a sliding minute;
# past it, 429 with Retry-After (lifecycle.people.quotas, README: JSON API). 0: no quota.
LIFECYCLE_EVENTS_PER_MINUTE = env_int("LIFECYCLE_EVENTS_PER_MINUTE", 60_000, minimum=0)
if 0 < LIFECYCLE_EVENTS_PER_MINUTE < 1000:
    raise ValueError(
        f"LIFECYCLE_EVENTS_PER_MINUTE is {LIFECYCLE_EVENTS_PER_MINUTE}: 0 (no quota) or at"
        " least 1000, the most one request may hold"
    )
# Login throttling (lifecycle.people.logins, README: Lockouts): a name that fails this many times
# within the window, or an address this many, is refused for LIFECYCLE_LOGIN_LOCKOUT seconds.
LIFECYCLE_LOGIN_FAILURES = env_int("LIFECYCLE_LOGIN_FAILURES", 5)
LIFECYCLE_LOGIN_ADDRESS_FAILURES = env_int("LIFECYCLE_LOGIN_ADDRESS_FAILURES", 20)
LIFECYCLE_LOGIN_WINDOW = env_int("LIFECYCLE_LOGIN_WINDOW", 900)
LIFECYCLE_LOGIN_LOCKOUT = env_int("LIFECYCLE_LOGIN_LOCKOUT", 900)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "dashboard.apps.DashboardConfig",
    "lifecycle.apps.LifecycleConfig",
    *(["lifecycle.lab.apps.LabConfig"] if LIFECYCLE_LAB else []),
]

MIDDLEWARE = [
    # Outermost: every response gets the policy, the early refusals below included.
    "dashboard.security.ContentSecurityPolicyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "dashboard.access.AccessMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"
# Only for "this session ended" (dashboard.session_sockets), not for events (the hub):
# in memory, a logout reaches the sockets of the web process that served it at once, and
# every process's own check finds the rest within seconds.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.access.context",
            ],
        },
    }
]

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

# What the console shows. It does not decide what is captured: the root logger lets
# WARNING and above through whatever LOG_LEVEL says, for the capture's log handler.
LOG_LEVEL = env("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "level": LOG_LEVEL},
    },
    "root": {
        "handlers": ["console"],
        "level": LOG_LEVEL if LOG_LEVEL in ("DEBUG", "INFO", "WARNING") else "WARNING",
    },
    "loggers": {
        "pika": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
    },
}

AUTHENTICATION_BACKENDS = ["lifecycle.people.logins.ThrottledBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# Behind a proxy that ends TLS (README: Behind TLS). The proxy must set X-Forwarded-Proto
# on every request and drop a client's own: the header is what tells Django a request
# came over https. On: plain http is redirected to https (but the lab's API, which the
# probe calls at LAB_BASE_URL, the server's own plain address), cookies go over https
# only, browsers are told to keep to https (HSTS), and a page (form or websocket) must
# come from an https origin: this host's own, or one of LIFECYCLE_TRUSTED_ORIGINS.
LIFECYCLE_HTTPS = env_bool("LIFECYCLE_HTTPS", False)
CSRF_TRUSTED_ORIGINS = trusted_origins(env("LIFECYCLE_TRUSTED_ORIGINS", ""), LIFECYCLE_HTTPS)
SECURE_HSTS_SECONDS = hsts_seconds(env("LIFECYCLE_HSTS_SECONDS", ""), LIFECYCLE_HTTPS)
if LIFECYCLE_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^lab/api/"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Only names under the inspector's own host; preloading is a promise for a whole
    # registered domain, made by submitting it to the browsers' list: not ours to make.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
