"""Reachability of the services the stack needs, with messages that say what to do."""

from __future__ import annotations

import glob
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
from django.conf import settings

from lifecycle import sql
from lifecycle.runtime.database import conninfo

SERVICES = sql.load("services")

CONNECT_TIMEOUT = 3  # seconds per service: both checks together stay well under 10 s


@dataclass(frozen=True)
class ServiceProblem:
    service: str
    address: str
    reason: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{self.service} is not reachable at {self.address}: {self.reason}\n"
            f"  Start it with: {self.fix}"
        )


def _postgres_start_command() -> str:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    version = versions[-1] if versions else "$(ls /etc/postgresql)"
    return f"pg_ctlcluster --skip-systemctl-redirect {version} main start"


def maintenance_conninfo() -> str:
    """libpq conninfo for the server's `postgres` database (to create ours if missing)."""
    return conninfo(dbname="postgres")


def postgres_address() -> str:
    db = settings.DATABASES["default"]
    return f"{db.get('HOST') or 'local socket'}:{db.get('PORT') or 5432}"


def check_postgres() -> ServiceProblem | None:
    try:
        with psycopg.connect(maintenance_conninfo(), connect_timeout=CONNECT_TIMEOUT):
            return None
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return ServiceProblem("PostgreSQL", postgres_address(), reason, _postgres_start_command())


def amqp_address() -> tuple[str, int]:
    parts = urlsplit(settings.AMQP_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def check_rabbitmq() -> ServiceProblem | None:
    """Open a TCP connection and read the AMQP handshake, within CONNECT_TIMEOUT."""
    host, port = amqp_address()
    address = f"{host}:{port}"
    fix = "rabbitmq-server -detached"
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            reply = sock.recv(8)
    except OSError as exc:
        return ServiceProblem("RabbitMQ", address, exc.strerror or str(exc), fix)
    if not reply or reply[0] != 1:  # a Connection.Start method frame
        return ServiceProblem("RabbitMQ", address, "the server there does not speak AMQP", fix)
    return None


def ensure_database() -> bool:
    """Create the configured database if it is missing. True when it was created."""
    name = settings.DATABASES["default"]["NAME"]
    with psycopg.connect(maintenance_conninfo(), autocommit=True) as conn:
        exists = conn.execute(SERVICES["database_exists"], [name]).fetchone()
        if exists:
            return False
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        return True
