"""The tasks service's Dramatiq broker, imported by the worker and by the API (to send).

Attached as the README's step 2 says: ``AsyncIO`` (Dramatiq's own, for ``async def``
actors) and ``LifecycleEvents`` on the broker, the log handler installed once per process.
The process's role comes from ``LIFECYCLE_PROCESS_ROLE`` (``worker`` or ``api``), which each
process sets, because both import this module.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import default_middleware
from dramatiq.middleware.asyncio import AsyncIO

from lifecycle.client import LifecycleEvents, install_log_handler

QUEUE = os.environ.get("TASKS_QUEUE", "tasks")

broker = RabbitmqBroker(
    url=os.environ["AMQP_URL"],
    middleware=[m() for m in default_middleware] + [AsyncIO(), LifecycleEvents()],
)
dramatiq.set_broker(broker)
install_log_handler()
