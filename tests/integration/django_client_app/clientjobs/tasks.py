"""A Dramatiq actor on a stub broker with the client's middleware: what a view sends is an
``enqueue`` broker event of its job (no worker runs here)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from lifecycle.client.dramatiq_middleware import LifecycleEvents

broker = StubBroker(middleware=[LifecycleEvents()])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="client-app")
def run_job(job_id: int) -> None:
    pass
