"""The process-wide Dramatiq broker, configured from Django settings."""

from __future__ import annotations

import dramatiq
from django.conf import settings
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import CurrentMessage, default_middleware

from lifecycle.client.dramatiq_middleware import LifecycleEvents

_broker: dramatiq.Broker | None = None


def setup_broker() -> dramatiq.Broker:
    """Create the RabbitMQ broker once per process and make it Dramatiq's global broker."""
    global _broker
    if _broker is None:
        middleware = [m() for m in default_middleware] + [CurrentMessage(), LifecycleEvents()]
        _broker = RabbitmqBroker(url=settings.AMQP_URL, middleware=middleware)
        dramatiq.set_broker(_broker)
    return _broker
