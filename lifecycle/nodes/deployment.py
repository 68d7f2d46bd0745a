"""A deployment of several nodes: which roles a node runs, what it does once for all.

Every ``lifecycle up`` that shares ``DATABASE_URL``, ``AMQP_URL`` and
``LIFECYCLE_NAMESPACE`` with another is a node of the same deployment (README: Running on
several machines). ``web``, ``ingest`` and the lab's ``worker`` run on every node that has
them; ``follow`` and ``maintain`` on one at a time (lifecycle/nodes/election.py).

- **Once for all, under a lock**: creating and migrating the database and making the first
  admin run under an advisory lock of the database's name (``once``), so nodes that start
  together do it one after the other, and the later ones find it done.
- **One deployment per namespace**: the database keeps the deployment's id (``Deployment``),
  and the namespace's queue ``<ns>.deployment`` on RabbitMQ holds it as its one message.
  A node whose database has another id than the queue's is refused (``claim_namespace``):
  two deployments that share a namespace would consume each other's events into two
  databases. The same id is the same deployment: nodes are the normal case.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pika
import psycopg
from django.conf import settings

from lifecycle.runtime.database import conninfo, redact

ROLES = ("web", "ingest", "worker", "follow", "maintain")
MARKER_ARGUMENTS = {"x-max-length": 1, "x-overflow": "drop-head"}  # <ns>.deployment: one mark


class RolesError(ValueError):
    pass


def parse_roles(text: str | None) -> tuple[str, ...]:
    """``--roles web,ingest,...`` in ``ROLES``' order; empty or None: every role."""
    if not text or not text.strip():
        return ROLES
    asked = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(asked) - set(ROLES))
    if unknown:
        raise RolesError(
            f"unknown role{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"--roles takes a comma-separated list of {', '.join(ROLES)}"
        )
    if not asked:
        raise RolesError(f"--roles names no role: give some of {', '.join(ROLES)}")
    return tuple(role for role in ROLES if role in asked)


@contextmanager
def once() -> Iterator[None]:
    """Hold the database's lock for what one node does for all (migrate, the first admin),
    on the server's maintenance database (the inspector's may not exist yet)."""
    from lifecycle.runtime.services import maintenance_conninfo

    name = settings.DATABASES["default"]["NAME"]
    key = zlib.crc32(f"lifecycle once {name}".encode()) - 2**31
    with psycopg.connect(maintenance_conninfo(), autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [key])
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [key])


def deployment_id() -> str:
    """This database's deployment id (made by the first node that asks)."""
    from lifecycle.models import Deployment

    row, _ = Deployment.objects.get_or_create(name="this")
    return str(row.deployment_id)


def marker_queue(namespace: str | None = None) -> str:
    return f"{namespace or settings.LIFECYCLE_NAMESPACE}.deployment"


def claim_namespace(namespace: str | None = None) -> str:
    """Mark the namespace on RabbitMQ as this deployment's: "" when it is (or now is), else
    a one-line refusal that names the other deployment."""
    namespace = namespace or settings.LIFECYCLE_NAMESPACE
    ours = deployment_id()
    database = redact(conninfo())
    queue = marker_queue(namespace)
    params = pika.URLParameters(settings.AMQP_URL)
    params.socket_timeout = 5
    params.blocked_connection_timeout = 5
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(queue, durable=True, arguments=MARKER_ARGUMENTS)
        except pika.exceptions.ChannelClosedByBroker:  # made otherwise: taken as it is
            # (pika has logged the broker's refusal as a warning: the one line is below)
            channel = connection.channel()
            channel.queue_declare(queue, passive=True)
        method, _, body = channel.basic_get(queue, auto_ack=False)
        if method is not None:
            channel.basic_nack(method.delivery_tag, requeue=True)
            theirs = _marker(body)
            if theirs.get("deployment") == ours:
                return ""
            return (
                f"the namespace {namespace!r} on RabbitMQ belongs to another deployment "
                f"({_shown(theirs.get('deployment')) or 'unreadable'}, database "
                f"{_shown(theirs.get('database')) or 'unknown'}), not to this database's "
                f"({ours}): "
                "set another LIFECYCLE_NAMESPACE, or, if this deployment replaces that one, "
                f"delete the queue {queue!r} (rabbitmqctl delete_queue {queue})"
            )
        channel.basic_publish(
            "",
            queue,
            json.dumps({"deployment": ours, "database": database}).encode(),
            pika.BasicProperties(delivery_mode=2, content_type="application/json"),
        )
        return ""
    finally:
        try:
            connection.close()
        except Exception:
            pass


def forget_namespace(namespace: str, amqp_url: str | None = None) -> None:
    """Take the namespace's mark away (a deployment that replaces its database anew, as
    the chaos stack and the tests do each run): the next node's database claims it."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url or settings.AMQP_URL))
    try:
        connection.channel().queue_delete(marker_queue(namespace))
    finally:
        connection.close()


def _shown(value: Any, limit: int = 200) -> str:
    """A value of the mark as a terminal may show it: anyone who may publish to that queue
    wrote it, so no control character (an escape sequence, a newline) and bounded."""
    text = value if isinstance(value, str) else ""
    text = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return text + ("..." if isinstance(value, str) and len(value) > limit else "")


def _marker(body: bytes | None) -> dict[str, Any]:
    try:
        found = json.loads(body or b"")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
