"""Check the services, create and migrate the database, start every process of the stack:
of a node, with ``--roles``, in a deployment of several (lifecycle/nodes/deployment.py)."""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command

from lifecycle.cli.worker import worker_child
from lifecycle.nodes import deployment
from lifecycle.nodes.heartbeat import Heartbeat, web_address
from lifecycle.people import accounts
from lifecycle.runtime import services
from lifecycle.runtime.supervisor import Child, Supervisor, python


def add_arguments(parser: Any) -> None:
    parser.add_argument("--no-migrate", action="store_true", help="skip creating/migrating")
    parser.add_argument("--port", type=int, default=None, help="web port (PORT, default 8000)")
    parser.add_argument(
        "--roles",
        default=None,
        help=f"the roles this node runs, comma-separated, of {','.join(deployment.ROLES)} (default:"
        " all); follow and maintain run on one node of the deployment at a time",
    )


def _wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def port_taken(host: str, port: int) -> str:
    """Why the web port cannot be used ("" when it can)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as daphne binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            return (
                f"port {port} on {host} is taken ({exc.strerror}): another `make run`, or "
                "another server; stop it, or choose another with PORT=..."
            )
    return ""


def handle(command: Any, options: dict[str, Any]) -> int:
    out, err = command.stdout, command.stderr
    problems = [p for p in (services.check_postgres(), services.check_rabbitmq()) if p]
    if problems:
        for problem in problems:
            err.write(str(problem))
        return 2
    try:
        roles = deployment.parse_roles(options["roles"])
    except deployment.RolesError as exc:
        err.write(str(exc))
        return 2
    host, port = settings.HOST, options["port"] or settings.PORT
    refusal = port_taken(host, port) if "web" in roles else ""
    if refusal:
        err.write(refusal)
        return 2
    with deployment.once():  # nodes that start together: one migrates, makes the first admin
        if not options["no_migrate"]:
            if services.ensure_database():
                out.write(f"created database {settings.DATABASES['default']['NAME']}")
            call_command("migrate", interactive=False, verbosity=0)
            out.write("database migrated")
        first = accounts.first_admin()
    # before any process starts: another deployment's processes would take our events
    refusal = deployment.claim_namespace()
    if refusal:
        err.write(refusal)
        return 2
    if first:
        out.write(
            f"\nNo account yet: made the admin account {first[0]!r}, password {first[1]}\n"
            "  (shown this once; change it at /admin/password_change/, or add accounts with\n"
            "  `python manage.py lifecycle user add NAME --role viewer|runner|maintainer`)\n"
        )
    out.write(f"node {settings.LIFECYCLE_NODE}: {', '.join(roles)}")

    every = [
        Child(
            "web",
            # daphne, with a body cap and a header timeout (dashboard.serve)
            python(
                "-m", "dashboard.serve", "-b", host, "-p", str(port), "dashboard.asgi:application"
            ),
            restart=True,  # a killed web process comes back and adopts the runs it polled
            # Its PORT is the one it binds (--port too): LAB_BASE_URL's default, where the
            # probe sends the lab's requests of the runs started there, is derived from it.
            env={"LIFECYCLE_PROCESS_ROLE": "web", "PORT": str(port)},
        ),
        *([worker_child()] if settings.LIFECYCLE_LAB else []),  # named "worker"
        Child(
            "ingest",
            python("manage.py", "lifecycle", "ingest"),
            restart=True,
            env={"LIFECYCLE_PROCESS_ROLE": "ingest"},
        ),
        Child(
            "follow",
            python("manage.py", "lifecycle", "follow"),
            restart=True,
            env={"LIFECYCLE_PROCESS_ROLE": "follow"},
        ),
        Child(
            "maintain",
            python("manage.py", "lifecycle", "maintain"),
            restart=True,
            env={"LIFECYCLE_PROCESS_ROLE": "maintain"},
        ),
    ]
    children = [child for child in every if child.name in roles]
    supervisor = Supervisor(children, log=out.write)
    supervisor.start()
    # the node's row in lifecycle_node, kept fresh by a thread of this process (`status`)
    heartbeat = Heartbeat(roles, web_address(host, port) if "web" in roles else "")
    heartbeat.start()
    try:
        return _serve(supervisor, roles, host, port, out, err)
    finally:
        heartbeat.stop()


def _serve(
    supervisor: Supervisor, roles: tuple[str, ...], host: str, port: int, out: Any, err: Any
) -> int:
    if "web" not in roles:
        out.write("\nStarted (no web role on this node; Ctrl-C stops every process)\n")
    elif _wait_for_port(host, port, timeout=30):
        out.write(f"\nDashboard: http://{host}:{port}/   (Ctrl-C stops every process)\n")
    else:
        err.write(f"the web server did not start listening on {host}:{port} within 30 s")
        supervisor.stop()
        return 1
    sys.stdout.flush()
    return supervisor.watch()
