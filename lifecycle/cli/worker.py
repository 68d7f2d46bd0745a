"""Run the lab's Dramatiq worker, restarted whenever it dies (as the redelivery fault makes it)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from lifecycle.runtime.supervisor import Child, Supervisor, python


def worker_child(threads: int | None = None) -> Child:
    return Child(
        "worker",
        python(
            "-m",
            "dramatiq",
            "lifecycle.worker",
            "--processes",
            "1",
            "--threads",
            str(threads or settings.WORKER_THREADS),
            "--queues",
            settings.LAB_QUEUE,
        ),
        restart=True,
        env={"LIFECYCLE_PROCESS_ROLE": "worker"},
    )


def add_arguments(parser: Any) -> None:
    parser.add_argument("--threads", type=int, default=None, help="worker threads (WORKER_THREADS)")


def handle(command: Any, options: dict[str, Any]) -> int:
    supervisor = Supervisor([worker_child(options["threads"])], log=command.stdout.write)
    supervisor.start()
    return supervisor.watch()
