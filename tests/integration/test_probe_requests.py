"""The probe against a real HTTP server of its own (a stdlib one in a thread): a scenario's
method, headers, body, dotted key and status paths, and the answers it refuses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from lifecycle.models import Event, Run
from lifecycle.scenarios import exchange, probe
from lifecycle.scenarios.catalogue import LAB_FILE, Scenario, activate
from tests.conftest import wait_for
from tests.integration.json_server import JsonHandler, JsonServer

pytestmark = pytest.mark.integration


class Service(JsonServer):
    """Answers PUT /things with ``submit_answer`` and GET /things/<key> with a done thing;
    keeps every request it got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.submit_answer: tuple[int, Any] = (202, {"data": {"thing": {"key": "k/1 #"}}})
        self.before_submit_answer: Callable[[], None] = lambda: None
        self.poll_raw: bytes | None = None  # what a poll gets instead, as it is
        service = self

        class Handler(JsonHandler):
            def do_PUT(self) -> None:
                service.requests.append(
                    {
                        "method": "PUT",
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": self.json_body(),
                    }
                )
                try:
                    service.before_submit_answer()
                finally:
                    connection.close()  # this thread's, if the hook used the database
                self.answer(*service.submit_answer)

            def do_GET(self) -> None:
                service.requests.append(
                    {"method": "GET", "path": self.path, "auth": self.headers.get("Authorization")}
                )
                if service.poll_raw is not None:
                    self.wfile.write(service.poll_raw)
                    return
                self.answer(200, {"thing": {"state": ["x", "finished"]}})

        super().__init__(Handler)


@pytest.fixture
def service() -> Iterator[Service]:
    found = Service()
    yield found
    found.close()


def scenario(tmp_path: Path, url: str, submit_extra: str = "") -> Scenario:
    """The things service's scenario, made the process's (with the lab's) like a file in
    LIFECYCLE_SCENARIOS would be; ``submit_extra``, more lines of its submit table."""
    path = tmp_path / "things.toml"
    path.write_text(
        f"""
base_url = "{url}"
[lifecycles.things]
statuses = ["new", "finished"]
success = ["finished"]
transitions = ["new -> finished"]

[[scenarios]]
name = "thing"
table = "things"
expect = "finished"
settle = 0
timeout = 2
poll_interval = 0.05
[scenarios.submit]
method = "PUT"
url = "/things"
key = "data.thing.key"
body = [1, "two"]
headers = {{ Authorization = "Bearer abc" }}
{submit_extra}
[scenarios.poll]
url = "/things/{{key}}"
status = "thing.state.1"
"""
    )
    return activate(f"{LAB_FILE}:{path}").scenarios["thing"]


@pytest.fixture(autouse=True)
def _lab_scenarios_after() -> Iterator[None]:
    yield
    activate(str(LAB_FILE))


@pytest.mark.django_db(transaction=True)
def test_a_scenario_submits_and_polls_as_its_file_says(
    tmp_path: Path, service: Service, postgres: None
) -> None:
    found = scenario(tmp_path, service.url)

    run = probe.execute(probe.create_run(found, "http://unused"))

    assert (run.verdict, run.observed, run.task_key) == (Run.Verdict.PASS, "finished", "k/1 #")
    submit, poll = service.requests[0], service.requests[1]
    assert submit == {"method": "PUT", "path": "/things", "auth": "Bearer abc", "body": [1, "two"]}
    assert poll == {"method": "GET", "path": "/things/k%2F1%20%23", "auth": "Bearer abc"}
    reads = Event.objects.filter(task_key="k/1 #", source="probe", kind="read")
    assert set(reads.values_list("status", flat=True)) == {"finished"}


@pytest.mark.django_db(transaction=True)
def test_a_key_prefix_names_the_task_as_the_capture_does_and_the_poll_as_the_service_does(
    tmp_path: Path, service: Service, postgres: None
) -> None:
    # Given a service whose keys the inspector knows after a prefix (capture install
    # --key-prefix, the client's LIFECYCLE_KEY_PREFIX), said in its scenario file
    found = scenario(tmp_path, service.url, 'key_prefix = "things:"')
    assert found.as_json()["submit"]["key_prefix"] == "things:"

    # When a run submits and polls
    run = probe.execute(probe.create_run(found, "http://unused"))

    # Then the run's task is the prefixed key, where its probe events are
    assert (run.verdict, run.task_key) == (Run.Verdict.PASS, "things:k/1 #")
    reads = Event.objects.filter(task_key="things:k/1 #", source="probe", kind="read")
    assert reads.exists() and not Event.objects.filter(task_key="k/1 #").exists()
    # And the poll asks the service for its own key
    assert service.requests[1]["path"] == "/things/k%2F1%20%23"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((500, {"error": "boom"}), "it answered 500 boom"),
        ((201, {"data": {}}), "its answer has no task key at 'data.thing.key'"),
        ((201, {"data": {"thing": {"key": True}}}), "is not a task key: True"),
        ((201, {"data": {"thing": {"key": "k" * 201}}}), "201 characters; events hold at most 200"),
        ((201, {"data": {"thing": {"key": "k\u0000"}}}), "holds a NUL character"),
        ((201, {"data": {"thing": {"key": "k\ud800"}}}), "holds a lone surrogate"),
        ((500, {"error": "x\u0000y\udc00"}), "it answered 500 x\ufffdy\ufffd"),
    ],
)
def test_an_answer_without_a_usable_key_ends_the_run_with_the_reason(
    tmp_path: Path, service: Service, postgres: None, answer: tuple[int, Any], error: str
) -> None:
    service.submit_answer = answer

    run = probe.execute(probe.create_run(scenario(tmp_path, service.url), "http://unused"))

    assert run.verdict == Run.Verdict.FAIL and run.task_key is None
    assert f"could not submit the task to {service.url}/things: " in run.error
    assert error in run.error
    assert len(service.requests) == 1  # nothing was polled


@pytest.mark.django_db(transaction=True)
def test_a_poll_answered_with_a_nul_in_its_status_line_is_a_read_with_no_answer(
    tmp_path: Path, service: Service, postgres: None
) -> None:
    # Given a service whose polls get a status line that holds a NUL (its text is the
    # error's, and PostgreSQL stores no NUL)
    service.poll_raw = b"HTTP/1.1 2\x000 OK\r\n\r\n"

    # When a run polls it to its deadline
    run = probe.execute(probe.create_run(scenario(tmp_path, service.url), "http://unused"))

    # Then each poll is a read with no answer, and the run ends on its deadline, not on the
    # database's refusal
    assert (run.state, run.verdict, run.observed, run.error) == (
        Run.State.DONE,
        Run.Verdict.FAIL,
        None,
        "",
    )
    reads = Event.objects.filter(task_key="k/1 #", kind="read")
    assert reads.count() >= 2
    assert all("\ufffd" in read.body["error"] for read in reads)


# -- runs outlive the process that follows them ----------------------------------------------


def submitted(found: Scenario) -> Run:
    """A run of ``found`` whose task the service accepted."""
    run = probe.create_run(found, "http://unused")
    assert probe.submit(run)
    return run


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_follower_died_is_adopted_and_gets_its_true_verdict(
    tmp_path: Path, service: Service, postgres: None
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    # Given a run submitted by a process that then died (it stopped saying it follows)
    found = scenario(tmp_path, service.url)
    run = submitted(found)
    quiet = timezone.now() - timedelta(seconds=probe.ORPHAN_AFTER + 1)
    Run.objects.filter(pk=run.pk).update(follower="gone:4242:dead", followed_at=quiet)
    # and one whose follower is alive
    alive = submitted(found)
    Run.objects.filter(pk=alive.pk).update(follower="alive:1:x", followed_at=timezone.now())

    # When a web process looks for orphans (twice at once: as two processes would)
    adopted = probe.adopt_orphans()
    again = probe.adopt_orphans()

    # Then it follows the dead one's run, once, to its true verdict
    assert [r.id for r in adopted] == [run.id] and again == []
    done = wait_for(
        lambda: Run.objects.filter(pk=run.pk, state=Run.State.DONE).first(),
        15,
        interval=0.05,
        what="the adopted run's verdict",
    )
    assert (done.verdict, done.observed, done.error) == (Run.Verdict.PASS, "finished", "")
    assert done.follower == probe.ME
    assert Run.objects.get(pk=alive.pk).state == Run.State.RUNNING  # not taken from the living


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_submitter_died_before_the_key_came_back_is_closed_as_a_failed_submit(
    tmp_path: Path, service: Service, postgres: None
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    # Given a run whose web process was killed mid-submit: no task key, its claim gone quiet
    found = scenario(tmp_path, service.url)
    quiet = timezone.now() - timedelta(seconds=probe.ORPHAN_AFTER + 1)
    dead = probe.create_run(found, "http://unused")
    Run.objects.filter(pk=dead.pk).update(follower="gone:4242:dead", followed_at=quiet)
    # and one whose submitter is alive, and a submitted one whose poller died
    alive = probe.create_run(found, "http://unused")
    Run.objects.filter(pk=alive.pk).update(follower="alive:1:x", followed_at=timezone.now())
    orphan = submitted(found)
    Run.objects.filter(pk=orphan.pk).update(follower="gone:4242:dead", followed_at=quiet)

    # When a web process looks for orphans
    adopted = probe.adopt_orphans()

    # Then the keyless run is closed at once with a failed submit's verdict, saying why
    # (not polled: there is no key to poll; not "abandoned" minutes later)
    closed = Run.objects.get(pk=dead.pk)
    assert (closed.state, closed.verdict, closed.task_key) == (
        Run.State.DONE,
        Run.Verdict.FAIL,
        None,
    )
    assert closed.error == probe.KEYLESS_ERROR and closed.finished_at is not None
    assert not closed.error.startswith("abandoned")
    assert [r.id for r in adopted] == [orphan.id]  # the submitted one is polled as before
    assert Run.objects.get(pk=alive.pk).state == Run.State.RUNNING
    assert probe.close_keyless() == []  # once

    # And the run's page says so, and that there is no task to show; the live one's, that
    # it is being submitted
    from tests.integration.people import as_role

    viewer = as_role("viewer")
    page = viewer.get(f"/runs/{dead.pk}").content.decode()
    assert "the process submitting it stopped (a restart or a crash)" in page
    assert "No task key came back from the submit" in page
    assert "is being submitted" in viewer.get(f"/runs/{alive.pk}").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_slow_submit_keeps_its_claim_and_one_closed_meanwhile_keeps_that_verdict(
    tmp_path: Path, service: Service, postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    monkeypatch.setattr(probe, "HEARTBEAT", 0.1)
    found = scenario(tmp_path, service.url)
    run = probe.create_run(found, "http://unused")
    probe.claim(run)

    # Given a service that answers the submit a second late, after another process has
    # looked for runs quiet for 0.7 s (a claim not renewed meanwhile would be closed)
    closed_meanwhile: list[list[int]] = []

    def looks() -> None:
        time.sleep(1.0)
        quiet = timezone.now() + timedelta(seconds=probe.ORPHAN_AFTER - 0.7)
        closed_meanwhile.append(probe.close_keyless(quiet))

    service.before_submit_answer = looks

    # When it submits, Then its claim was renewed while it waited, and it goes on
    assert probe.submit(run)
    assert closed_meanwhile == [[]]
    assert Run.objects.get(pk=run.pk).task_key == "k/1 #"

    # Given a second run that another process closes before the service answers (the
    # submitter was taken for dead: a database outage longer than ORPHAN_AFTER; no beat
    # comes between, or the close would rightly find the claim renewed)
    monkeypatch.setattr(probe, "HEARTBEAT", 60.0)
    second = probe.create_run(found, "http://unused")
    probe.claim(second)

    def closes() -> None:
        far = timezone.now() + timedelta(seconds=probe.ORPHAN_AFTER + 60)
        closed_meanwhile.append(probe.close_keyless(far))

    service.before_submit_answer = closes

    # When the answer comes, Then the submitter leaves the closed run as it is
    assert not probe.submit(second)
    assert closed_meanwhile[-1] == [second.id]
    stored = Run.objects.get(pk=second.pk)
    assert (stored.state, stored.task_key, stored.error) == (
        Run.State.DONE,
        None,
        probe.KEYLESS_ERROR,
    )
    assert second.state == Run.State.DONE  # what the caller holds says so too

    # And one whose submit fails on its own after it was closed: the caller holds the
    # verdict that stands, not the failure it met
    third = probe.create_run(found, "http://unused")
    probe.claim(third)
    service.submit_answer = (500, {"error": "boom"})
    assert not probe.submit(third)
    assert closed_meanwhile[-1] == [third.id]
    assert (third.state, third.error) == (Run.State.DONE, probe.KEYLESS_ERROR)


@pytest.mark.django_db(transaction=True)
def test_a_follower_waits_out_a_database_that_cut_its_connection(
    tmp_path: Path, service: Service, postgres: None
) -> None:
    from django.db import connection

    run = submitted(scenario(tmp_path, service.url))

    # When PostgreSQL ends this process's connection (as a restart does) mid-run
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    import psycopg

    with psycopg.connect(f"dbname={connection.settings_dict['NAME']}", autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])

    # Then the poll reconnects, records its reads and gives the verdict
    probe.poll_to_verdict(run)
    run.refresh_from_db()
    assert (run.verdict, run.observed) == (Run.Verdict.PASS, "finished")
    assert Event.objects.filter(task_key=run.task_key, kind="verdict").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_read_stored_before_its_connection_was_lost_is_not_stored_again(
    tmp_path: Path, service: Service, postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = scenario(tmp_path, service.url)
    run = probe.create_run(found, "http://unused")
    real_db = probe._db

    def committed_then_retried(work: Any, patience: float = 1.0) -> Any:
        # The insert commits and the connection drops before its answer: _db does it again
        work()
        return real_db(work, patience)

    monkeypatch.setattr(probe, "_db", committed_then_retried)
    probe._record(run, "read", "twice/1", None, "working")

    # Then the read is stored once
    assert Event.objects.filter(task_key="twice/1", kind="read").count() == 1


# -- a service that trickles its answer ----------------------------------------------------


class Trickling(JsonServer):
    """Answers every request a byte every 0.2 s, for a minute: the headers (``where`` =
    "headers") or a body that says it is longer than it is yet ("body"); and a redirect to
    itself first when ``hop``."""

    def __init__(self, where: str, hop: bool = False) -> None:
        trickling = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                if hop and self.path == "/start":
                    self.send_response(302)
                    self.send_header("Location", "/things/1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                rest = b'{"thing": {"state": ["x", "finished"]}}' + b" " * 100_000
                if where == "headers":
                    dribble, first = head + b"Content-Length: 2\r\n\r\n{}", b""
                else:
                    first = head + f"Content-Length: {len(rest)}\r\n\r\n".encode()
                    dribble = rest
                self.wfile.write(first)
                self.wfile.flush()
                end = time.monotonic() + 60
                for byte in dribble:
                    if time.monotonic() > end or trickling.closed.is_set():
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        return  # the probe gave up: what this test wants
                    time.sleep(0.2)

        self.closed = threading.Event()
        super().__init__(Handler)

    def close(self) -> None:
        self.closed.set()
        super().close()


@pytest.mark.parametrize(("where", "hop"), [("headers", False), ("body", False), ("body", True)])
def test_an_answer_that_trickles_in_is_cut_off_at_the_requests_total_time(
    monkeypatch: pytest.MonkeyPatch, where: str, hop: bool
) -> None:
    # Given a service whose every byte comes well within HTTP_TIMEOUT of the last, but whose
    # answer would take minutes in all
    monkeypatch.setattr(exchange, "HTTP_TOTAL", 1.5)
    server = Trickling(where, hop)
    try:
        # When the probe asks it (after a redirect, on the second connection)
        began = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no whole answer within 1.5 s"):
            exchange.http_json("GET", f"{server.url}/{'start' if hop else 'things/1'}", None, "t")

        # Then the request ends at its total time, not at the trickle's end
        assert time.monotonic() - began < 1.5 + exchange.HTTP_TIMEOUT
    finally:
        server.close()


def test_an_answer_within_its_total_time_is_read_whole_and_the_next_request_is_not_cut(
    monkeypatch: pytest.MonkeyPatch, service: Service
) -> None:
    monkeypatch.setattr(exchange, "HTTP_TOTAL", 0.5)
    for _ in range(3):  # each request its own clock: a shut socket of one is not another's
        answer = exchange.http_json("GET", f"{service.url}/things/1", None, "t")
        assert answer.http_status == 200 and answer.body["thing"]["state"][1] == "finished"
        time.sleep(0.3)


@pytest.mark.django_db(transaction=True)
def test_a_submit_the_service_leaves_unanswered_past_the_timeout_fails_at_once(
    tmp_path: Path, service: Service, postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a service that answers the submit after the socket's timeout, and a submitter
    # that beats often
    monkeypatch.setattr(exchange, "HTTP_TIMEOUT", 0.5)
    monkeypatch.setattr(probe, "HEARTBEAT", 0.1)
    beats: list[float] = []
    renew = probe._still_mine

    def counted(run: Run) -> bool:
        beats.append(time.monotonic())
        return renew(run)

    monkeypatch.setattr(probe, "_still_mine", counted)
    service.before_submit_answer = lambda: time.sleep(1.5)
    run = probe.create_run(scenario(tmp_path, service.url), "http://unused")
    probe.claim(run)

    # When it submits
    began = time.monotonic()
    assert not probe.submit(run)

    # Then the run fails when the socket times out, having beaten a few times (a timeout
    # is not taken for the heartbeat's own wait, over and over)
    assert time.monotonic() - began < 1.4
    assert len(beats) <= 8
    stored = Run.objects.get(pk=run.pk)
    assert (stored.state, stored.verdict) == (Run.State.DONE, Run.Verdict.FAIL)
    assert "timed out" in stored.error


def test_a_tls_handshake_that_trickles_is_cut_off_at_the_requests_total_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a server that answers a TLS hello with a record header that promises 16 KB, then
    # sends a byte every 0.2 s
    monkeypatch.setattr(exchange, "HTTP_TOTAL", 1.5)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"\x16\x03\x03\x40\x00")
            while not stop.is_set():
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return
                stop.wait(0.2)

    threading.Thread(target=serve, daemon=True).start()
    port = listener.getsockname()[1]
    try:
        # When the probe asks it over https, Then the handshake ends at the total time
        began = time.monotonic()
        with pytest.raises(TimeoutError, match="no whole answer within 1.5 s"):
            exchange.http_json("GET", f"https://127.0.0.1:{port}/things/1", None, "t")
        assert time.monotonic() - began < 1.5 + exchange.HTTP_TIMEOUT
    finally:
        stop.set()
        listener.close()


def test_an_https_service_is_asked_and_checked_as_urlopen_would(
    tmp_path: Path, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl
    import subprocess

    # Given an HTTPS service whose certificate (for 127.0.0.1) the machine trusts, through
    # the environment as OpenSSL reads it
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    service.server.socket = context.wrap_socket(service.server.socket, server_side=True)
    url = f"https://127.0.0.1:{service.port}/things/1"

    # When the probe asks it, Then it reads the answer whole
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    answer = exchange.http_json("GET", url, None, "t")
    assert answer.http_status == 200 and answer.body["thing"]["state"][1] == "finished"

    # and a certificate the machine does not trust is refused, as urlopen refuses it
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        exchange.http_json("GET", url, None, "t")
