"""The foreign service's Dramatiq worker, on its own broker, with two real bugs. Its jobs
go queued -> working -> done (or errored): statuses of its own, declared in scenarios.toml.

    python -m dramatiq worker --processes 1 --threads 2

Attached with two lines: the middleware on its broker, and the log handler.
"""

from __future__ import annotations

import logging
import os
import time

import dramatiq
import psycopg
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import default_middleware

from lifecycle.client import LifecycleEvents, install_log_handler

DATABASE = os.environ["JOBS_DATABASE_URL"]
QUEUE = os.environ.get("JOBS_QUEUE", "jobs")

broker = RabbitmqBroker(
    url=os.environ["AMQP_URL"],
    middleware=[m() for m in default_middleware] + [LifecycleEvents()],
)
dramatiq.set_broker(broker)
install_log_handler("foreign-worker")
logger = logging.getLogger("foreign.worker")


class LLMError(Exception):
    pass


def call_llm() -> str:
    raise LLMError("the model timed out")


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def process_job(job_id: str) -> None:
    with psycopg.connect(DATABASE, application_name="foreign-worker") as conn:
        mode = conn.execute(
            "UPDATE jobs SET state = 'working', updated_at = now() WHERE id = %s RETURNING mode",
            [job_id],
        ).fetchone()[0]
        conn.commit()
        if mode == "swallowed_error":
            # BUG: the client swallows its exception and the job is marked done anyway.
            try:
                result = call_llm()
            except LLMError:
                logger.warning("LLM call failed for job %s", job_id, exc_info=True)
                result = ""
        else:
            if mode == "slow":
                time.sleep(1)  # a second of real work between working and done
            result = "42"
        conn.execute(
            "UPDATE jobs SET state = 'done', result = %s, updated_at = now() WHERE id = %s",
            [result, job_id],
        )
        if mode == "flush_without_commit":
            # BUG: the write is flushed but the session closes without a commit.
            conn.rollback()
            return
        conn.commit()
