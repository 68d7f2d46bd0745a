"""A small foreign service's HTTP API: no Django, no framework, its own database.

POST /jobs {"mode": "ok" | "slow" | "flush_without_commit" | "swallowed_error"} creates a job and
enqueues it; GET /jobs/<id> reads it; GET /replica/jobs/<id> reads it from a hot standby of
its database (on JOBS_REPLICA_PORT of the same host), as a service that sends its reads to
a replica does. Attached to the inspector with one line per read.
"""

from __future__ import annotations

import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from worker import process_job

from lifecycle.client import read_row

DATABASE = os.environ["JOBS_DATABASE_URL"]
REPLICA_PORT = os.environ.get("JOBS_REPLICA_PORT", "")
JOB = re.compile(r"^(/replica)?/jobs/([0-9a-f-]{36})$")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/jobs":
            return self.answer(404, {"error": "no such path"})
        length = int(self.headers.get("Content-Length") or 0)
        mode = json.loads(self.rfile.read(length) or b"{}").get("mode", "ok")
        with psycopg.connect(DATABASE, application_name="foreign-api") as conn:
            job = conn.execute(
                "INSERT INTO jobs (mode) VALUES (%s) RETURNING id::text, state", [mode]
            ).fetchone()
        process_job.send(job[0])  # after the commit
        self.answer(201, {"id": job[0], "state": job[1]})

    def do_GET(self) -> None:
        match = JOB.match(self.path)
        if not match:
            return self.answer(404, {"error": "no such path"})
        where = {"port": REPLICA_PORT} if match[1] else {}
        if match[1] and not REPLICA_PORT:
            return self.answer(503, {"error": "no replica: JOBS_REPLICA_PORT is not set"})
        try:
            conn = psycopg.connect(DATABASE, application_name="foreign-api", **where)
        except psycopg.OperationalError as exc:
            return self.answer(503, {"error": f"database unavailable: {exc}"})
        with conn:
            # The one line that attaches this read: the row, its version, and (on a
            # standby) its replay, reported.
            row = read_row(conn, "jobs", match[2], status_column="state", client="foreign-test")
        if row is None:
            return self.answer(404, {"error": "no such job"})
        self.answer(200, {"id": str(row["id"]), "state": row["state"]})

    def answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    print("listening", flush=True)
    server.serve_forever()
