"""A real hot standby of the inspector's PostgreSQL, for the lab's ``replica-read`` scenario.

Made with PostgreSQL's own tools: ``pg_basebackup -R -X stream`` copies the primary into
``var/standby/data`` and writes its ``standby.signal`` and ``primary_conninfo``; the copy
gets a configuration of its own (Debian keeps the primary's in ``/etc/postgresql``, so a
copy has none), on a port of its own, with ``recovery_min_apply_delay`` so a commit shows
there a known time later, every time. As root, every tool runs as the ``postgres`` user,
who owns the copy.

The primary must accept a replication connection from the loopback: ``all`` in
``pg_hba.conf`` does not match one. ``start`` adds ``host replication all 127.0.0.1/32
trust`` (loopback only) and reloads the primary when it may write that file, else says
what to add.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings

HBA_LINE = "host replication all 127.0.0.1/32 trust"
HBA_COMMENT = "# added by `lifecycle standby start`: the lab's hot standby streams from here"
# Settings a hot standby needs at least as high as its primary's, or it will not start.
AT_LEAST_PRIMARYS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


class StandbyError(RuntimeError):
    """The standby cannot be made or started; the text says why and what to do."""


@dataclass(frozen=True)
class Standby:
    directory: Path  # var/standby: data/, run/ (its socket), standby.log
    port: int
    delay: str  # recovery_min_apply_delay

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "standby.log"

    def url(self, database: str | None = None) -> str:
        """The standby's URL for ``database`` (default: the inspector's), as
        ``LAB_REPLICA_URL`` takes it."""
        db = settings.DATABASES["default"]
        user = db.get("USER") or pwd.getpwuid(os.getuid()).pw_name
        auth = user + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database or db['NAME']}"


def configured() -> Standby:
    return Standby(
        Path(settings.LIFECYCLE_STANDBY_DIR),
        settings.LIFECYCLE_STANDBY_PORT,
        settings.LIFECYCLE_STANDBY_DELAY,
    )


def _primary(**extra: Any) -> psycopg.Connection[Any]:
    from lifecycle.runtime.database import conninfo

    # The server's own database: the inspector's may not exist yet (a fresh CI machine).
    return psycopg.connect(
        conninfo(dbname="postgres", application_name="lifecycle-standby"), autocommit=True, **extra
    )


def _as_postgres(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the ``postgres`` user when we are root (its server refuses
    to run as root), else as ourselves."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, text=True, capture_output=True, **kwargs)


def _bindir(conn: psycopg.Connection[Any]) -> Path:
    """The server programs of the primary's major version (Debian's layout), else PATH's."""
    version = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000  # type: ignore[index]
    debian = Path(f"/usr/lib/postgresql/{version}/bin")
    if (debian / "pg_ctl").exists():
        return debian
    found = shutil.which("pg_ctl")
    if found is None:
        raise StandbyError(
            f"pg_ctl of PostgreSQL {version} is not installed "
            f"(apt-get install postgresql-{version})"
        )
    return Path(found).parent


def running(standby: Standby) -> bool:
    """Whether a server in recovery answers on the standby's port."""
    try:
        with psycopg.connect(
            host="127.0.0.1", port=standby.port, dbname="postgres", connect_timeout=2, **_auth()
        ) as conn:
            return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])  # type: ignore[index]
    except psycopg.Error:
        return False


def _auth() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    auth: dict[str, Any] = {}
    if db.get("USER"):
        auth["user"] = db["USER"]
    if db.get("PASSWORD"):
        auth["password"] = db["PASSWORD"]
    return auth


def allow_replication(conn: psycopg.Connection[Any]) -> str | None:
    """Make sure the primary accepts a loopback replication connection; returns what was
    done (None: it already did). Raises StandbyError saying what to add when it may not."""
    rules = conn.execute(
        "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NULL "
        "AND 'replication' = ANY(database) AND type IN ('host', 'hostnossl', 'local')"
    ).fetchone()
    if rules and rules[0]:
        return None
    hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
    if not os.access(hba, os.W_OK):
        raise StandbyError(
            f"the primary allows no replication connection: add the line\n  {HBA_LINE}\n"
            f"to {hba}, then reload it (SELECT pg_reload_conf())"
        )
    with hba.open("a", encoding="utf-8") as out:
        out.write(f"\n{HBA_COMMENT}\n{HBA_LINE}\n")
    conn.execute("SELECT pg_reload_conf()")
    return f"added `{HBA_LINE}` to {hba} and reloaded the primary"


def start(standby: Standby | None = None, *, wait: float = 60.0) -> list[str]:
    """Make (if needed) and start the standby; idempotent. Returns what was done."""
    standby = standby or configured()
    if running(standby):
        return [f"a standby already runs on port {standby.port}"]
    done: list[str] = []
    with _primary() as conn:
        bindir = _bindir(conn)
        if not (standby.data / "standby.signal").exists():
            if (changed := allow_replication(conn)) is not None:
                done.append(changed)
            limits = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in AT_LEAST_PRIMARYS
            }
            _copy(standby, conn, bindir, limits)
            done.append(f"copied the primary into {standby.data} (pg_basebackup -R -X stream)")
    _own(standby.directory)
    started = _as_postgres(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(standby.data),
            "-l",
            str(standby.log),
            "-w",
            "-t",
            str(int(wait)),
            "start",
        ]  # fmt: skip
    )
    if started.returncode != 0:
        tail = standby.log.read_text(errors="replace")[-1500:] if standby.log.exists() else ""
        raise StandbyError(f"the standby did not start: {started.stderr.strip()}\n{tail}")
    deadline = time.monotonic() + wait
    while not running(standby):
        if time.monotonic() > deadline:
            raise StandbyError(f"the standby on port {standby.port} does not answer")
        time.sleep(0.2)
    done.append(
        f"started a hot standby on port {standby.port}, replaying {standby.delay} behind the "
        "primary"
    )
    return done


def _copy(
    standby: Standby, conn: psycopg.Connection[Any], bindir: Path, limits: dict[str, str]
) -> None:
    if standby.data.exists():
        shutil.rmtree(standby.data)
    (standby.directory / "run").mkdir(parents=True, exist_ok=True)
    _own(standby.directory)
    info = conn.info
    copied = _as_postgres(
        [
            str(bindir / "pg_basebackup"),
            "-h",
            info.host or "127.0.0.1",
            "-p",
            str(info.port),
            "-U",
            info.user,
            "-D",
            str(standby.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ],  # fmt: skip
        env={**os.environ, **({"PGPASSWORD": info.password} if info.password else {})},
    )
    if copied.returncode != 0:
        raise StandbyError(f"pg_basebackup failed: {copied.stderr.strip()}")
    config = [
        f"port = {standby.port}",
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{standby.directory / 'run'}'",
        "hot_standby = on",
        f"recovery_min_apply_delay = '{standby.delay}'",
        "logging_collector = off",
        *(f"{name} = {value}" for name, value in limits.items()),
    ]
    (standby.data / "postgresql.conf").write_text("\n".join(config) + "\n", encoding="utf-8")
    (standby.data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8"
    )
    _own(standby.directory)


def _own(directory: Path) -> None:
    """As root: the copy belongs to ``postgres`` (its server runs as that user)."""
    if os.geteuid() != 0 or not directory.exists():
        return
    subprocess.run(["chown", "-R", "postgres:postgres", str(directory)], check=True)
    os.chmod(directory, 0o700)


def stop(standby: Standby | None = None, *, keep: bool = False) -> list[str]:
    """Stop the standby and (unless ``keep``) remove its copy; idempotent."""
    standby = standby or configured()
    done = []
    if (standby.data / "postmaster.pid").exists():
        with _primary() as conn:
            bindir = _bindir(conn)
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(standby.data), "-m", "fast", "-w", "stop"])
        done.append(f"stopped the standby on port {standby.port}")
    if not keep and standby.directory.exists():
        shutil.rmtree(standby.directory)
        done.append(f"removed {standby.directory}")
    return done or ["no standby was running"]


def status(standby: Standby | None = None) -> dict[str, Any]:
    """Whether it runs, and how far behind the primary its replay is."""
    standby = standby or configured()
    if not running(standby):
        return {"running": False, "port": standby.port, "directory": str(standby.directory)}
    with psycopg.connect(host="127.0.0.1", port=standby.port, dbname="postgres", **_auth()) as conn:
        replayed, delay, lag = conn.execute(
            "SELECT pg_last_xact_replay_timestamp(), current_setting('recovery_min_apply_delay'),"
            " extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
        ).fetchone()  # type: ignore[misc]
    return {
        "running": True,
        "port": standby.port,
        "directory": str(standby.directory),
        "delay": delay,
        "replayed_at": replayed.isoformat() if replayed else None,
        "seconds_behind": round(float(lag), 3) if lag is not None else None,
        "url": standby.url(),
    }
