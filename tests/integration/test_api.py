"""The JSON APIs' validation and 404s, through Django's test client and the real database."""

import json
import uuid

import pytest

from lifecycle.lab.models import Task
from lifecycle.models import Run

pytestmark = [pytest.mark.integration]


def post(client, url, body):
    return client.post(url, data=body, content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"config": {}, "extra": 1}', "unknown field(s): extra"),
        (b'{"config": {"input": "x"}}', "invalid config: input must be a list"),
        (b'{"config": {"sleep": 1000}}', "invalid config: sleep must be a number"),
    ],
)
def test_creating_a_task_with_bad_input_is_a_400_that_says_why(client, postgres, body, message):
    response = post(client, "/lab/api/tasks", body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert Task.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_creating_a_task_stores_it_pending_and_answers_201(client, postgres, rabbitmq):
    response = post(client, "/lab/api/tasks", json.dumps({"config": {"input": [1]}}))
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "PENDING"
    assert response["Location"] == f"/lab/api/tasks/{body['id']}"
    assert Task.objects.get(pk=body["id"]).config == {"input": [1]}


@pytest.mark.django_db
def test_reading_a_task_returns_it(client, postgres):
    task = Task.objects.create(config={"input": [2]})
    response = client.get(f"/lab/api/tasks/{task.id}")
    assert response.status_code == 200
    assert response.json()["status"] == "PENDING"
    assert response.json()["config"] == {"input": [2]}


@pytest.mark.django_db
@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_an_unknown_task_is_a_json_404(client, postgres, task_id):
    response = client.get(f"/lab/api/tasks/{task_id}")
    assert response.status_code == 404
    assert "no task" in response.json()["error"]


@pytest.mark.django_db
def test_the_scenario_catalogue_lists_names_descriptions_and_expectations(client, postgres):
    scenarios = client.get("/api/scenarios").json()["scenarios"]
    by_name = {s["name"]: s for s in scenarios}
    assert by_name["fails"]["expected"] == "FAILED"
    assert by_name["swallowed-error"]["clean"] is False
    assert all(s["description"] for s in scenarios)


@pytest.mark.django_db
def test_unknown_scenarios_and_runs_are_404(client, postgres):
    response = client.post("/api/scenarios/no-such-thing/runs")
    assert response.status_code == 404
    assert "unknown scenario 'no-such-thing'" in response.json()["error"]
    assert client.get("/api/runs/999999").status_code == 404
    assert client.post("/api/runs/999999/resubmit").status_code == 404
    assert Run.objects.count() == 0


@pytest.mark.django_db
def test_an_events_fields_are_served_for_the_popover_of_a_long_timeline(client, postgres):
    from dashboard.render import INLINE_FIELDS_LIMIT
    from lifecycle.models import Event

    event = Event.objects.create(
        task_key="t-fields", source="log", kind="error", body={"exception": "a\nb", "pid": 7}
    )
    body = client.get(f"/api/events/{event.id}").json()
    assert body["event"]["id"] == event.id
    assert ["exception", "a\nb"] in body["fields"] and ["pid", "7"] in body["fields"]
    assert client.get("/api/events/999999999").status_code == 404

    # A short timeline carries the fields in each card's title; a long one leaves them out
    assert 'title="event: #' in client.get("/tasks/t-fields").content.decode()
    # (each read from its own client, so that none is folded into a run of reads)
    Event.objects.bulk_create(
        Event(task_key="t-long", source="api", kind="read", status="RUNNING", body={"client": i})
        for i in range(INLINE_FIELDS_LIMIT + 1)
    )
    page = client.get("/tasks/t-long").content.decode()
    assert page.count('data-testid="event"') == INLINE_FIELDS_LIMIT + 1
    assert 'title="event: #' not in page


@pytest.mark.django_db
def test_a_run_nobody_follows_any_more_is_closed_as_abandoned(client, postgres):
    from datetime import timedelta

    from django.utils import timezone

    # Given a run whose following thread died with its web process long ago
    run = Run.objects.create(scenario="succeeds", expected="COMPLETED", task_key="t-gone")
    Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=1))
    fresh = Run.objects.create(scenario="succeeds", expected="COMPLETED", task_key="t-now")

    # When someone looks at it
    body = client.get(f"/api/runs/{run.id}").json()

    # Then it is done and failed, and says why; a run still in its time is left alone
    assert (body["state"], body["verdict"]) == ("done", "fail")
    assert body["error"].startswith("abandoned:")
    assert client.get(f"/api/runs/{fresh.id}").json()["state"] == "running"


@pytest.mark.django_db
def test_the_home_page_lists_tasks_by_their_newest_event_a_page_at_a_time(client, postgres):
    from lifecycle.models import Event
    from lifecycle.store.eventlog import PAGE_SIZE, recent_tasks

    # Given more tasks than a page, one of which is busy (many events, an old first one)
    busy = "t-busy"
    Event.objects.create(task_key=busy, source="api", kind="read")
    Event.objects.bulk_create(
        Event(task_key=f"t-{i:03d}", source="api", kind="read") for i in range(PAGE_SIZE + 5)
    )
    Event.objects.bulk_create(Event(task_key=busy, source="api", kind="read") for _ in range(300))

    # Then page 1 starts with the task whose event is newest, with its whole count
    first, has_next = recent_tasks(1)
    assert first[0].task_key == busy and first[0].events == 301
    assert len(first) == PAGE_SIZE and has_next
    second, has_next = recent_tasks(2)
    assert len(second) == 6 and not has_next
    assert not {t.task_key for t in first} & {t.task_key for t in second}
    assert second[-1].task_key == "t-000"
    # and the page says so
    page = client.get("/?page=2").content.decode()
    assert 'rel="prev"' in page and 'rel="next"' not in page


@pytest.mark.django_db
def test_the_task_page_says_which_clock_placed_the_commits(client, postgres):
    from lifecycle.models import Event

    # Given a commit copied with its server's commit time, and one without
    body = {"old_status": None, "new_status": "PENDING", "table": "public.jobs"}
    Event.objects.create(
        task_key="clock-a",
        source="db",
        kind="insert",
        status="PENDING",
        txid=5,
        body={**body, "database": "app", "committed_at": "2026-12-01T12:00:00.005+00:00"},
    )
    Event.objects.create(
        task_key="clock-b", source="db", kind="insert", status="PENDING", txid=6, body=body
    )
    # Then each page names its clock
    assert "as their server recorded it" in client.get("/tasks/clock-a").content.decode()
    page = client.get("/tasks/clock-b").content.decode()
    assert "placed at their write" in page and "250 ms" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_ORIGIN": "http://evil.example"},
        {"HTTP_ORIGIN": "null"},
        {"HTTP_ORIGIN": "http://testserver:8001"},  # another port is another origin
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
    ],
)
def test_another_sites_page_cannot_create_lab_tasks(client, postgres, headers):
    # A simple request: text/plain needs no preflight, so a page elsewhere could send it
    before = Task.objects.count()
    response = client.post(
        "/lab/api/tasks",
        data=b'{"config": {"redelivery": true}}',
        content_type="text/plain",
        **headers,
    )
    assert response.status_code == 403
    assert "cross-origin" in response.json()["error"]
    assert Task.objects.count() == before


@pytest.mark.django_db(transaction=True)
def test_the_lab_api_stays_open_to_a_runner_and_its_own_pages(client, postgres, rabbitmq):
    # client: a superuser's session (tests/integration/test_lab_access.py: who else may)
    for headers in ({}, {"HTTP_ORIGIN": "http://testserver"}):
        response = client.post(
            "/lab/api/tasks",
            data=b'{"config": {"input": [1]}}',
            content_type="application/json",
            **headers,
        )
        assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_a_task_with_a_gap_says_its_history_may_be_incomplete(client, postgres):
    from lifecycle.models import Event

    # Given a publisher told it dropped 12 of the task's broker events (its name untrusted)
    Event.objects.create(
        task_key="t-gap",
        source="broker",
        kind="gap",
        body={
            "dropped": 12,
            "first_at": "2026-12-02T18:33:57+00:00",
            "last_at": "2026-12-02T18:34:02+00:00",
            "process": "<b>worker</b>",
            "pid": 42,
        },
    )

    page = client.get("/tasks/t-gap").content.decode()

    assert 'data-testid="incomplete"' in page
    assert "This history may be incomplete." in page
    assert (
        "The &lt;b&gt;worker&lt;/b&gt; (pid 42) dropped 12 broker events between "
        "18:33:57.000 and 18:34:02.000" in page
    )
    assert "<b>worker</b>" not in page


@pytest.mark.django_db
def test_the_json_timeline_pages_with_a_cursor(client, postgres):
    from datetime import UTC, datetime, timedelta

    from lifecycle.models import Event

    t0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    # Given seven events, arriving out of time order
    for n in (3, 1, 0, 6, 2, 5, 4):
        Event.objects.create(
            task_key="t-pages",
            source="api",
            kind="read",
            status=f"S{n}",
            at=t0 + timedelta(seconds=n),
            body={"n": n},
        )

    # When a client walks it three at a time
    seen, after, pages = [], None, 0
    while True:
        url = "/api/tasks/t-pages/timeline?limit=3" + (f"&after={after}" if after else "")
        body = client.get(url).json()
        pages += 1
        seen += [e["status"] for e in body["events"]]
        assert body["total"] == 7
        after = body["next"]
        if after is None:
            break

    # Then it saw every event once, in the timeline's order, in three pages
    assert (seen, pages) == ([f"S{n}" for n in range(7)], 3)
    # and without a limit the timeline is whole, as before
    whole = client.get("/api/tasks/t-pages/timeline").json()
    assert len(whole["events"]) == 7 and "next" not in whole
    for bad in ("limit=0", "limit=5001", "limit=x", "after=nope"):
        response = client.get(f"/api/tasks/t-pages/timeline?{bad}")
        assert response.status_code == 400, bad


@pytest.mark.django_db
def test_a_task_exports_as_an_otlp_trace_file(client, postgres):
    from lifecycle.models import Event

    Event.objects.create(
        task_key="t/otlp <1>", source="db", kind="insert", status="PENDING", body={}
    )
    response = client.get("/api/tasks/t%2Fotlp%20%3C1%3E/otlp")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="t_otlp_1_.otlp.json"'
    spans = response.json()["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert spans[0]["name"] == "task t/otlp <1>"
    assert client.get("/api/tasks/nothing-here/otlp").status_code == 404


@pytest.mark.django_db
def test_a_scenario_page_plots_its_verdicts_and_read_latency(client, postgres):
    from lifecycle.models import Event

    for n, verdict in enumerate(["pass", "fail", None]):
        run = Run.objects.create(
            scenario="slow",
            expected="COMPLETED",
            task_key=f"plot-{n}",
            verdict=verdict,
            state="done" if verdict else "running",
        )
        for ms in (3.5, 4.0, 120.0):
            Event.objects.create(
                task_key=run.task_key,
                source="probe",
                kind="read",
                status="RUNNING",
                body={"run": run.id, "latency_ms": ms},
            )

    page = client.get("/scenarios/slow").content.decode()

    assert 'data-testid="verdict-plot"' in page and 'data-testid="latency-plot"' in page
    assert page.count('class="v-pass"') == 1 and page.count('class="v-fail"') == 1
    assert "<title>run " in page and "(9 reads)" in page


@pytest.mark.django_db
def test_replica_read_without_a_standby_is_listed_unavailable_and_starts_nothing(
    client, postgres, settings
):
    # Given no standby (LAB_REPLICA_URL empty)
    settings.LAB_REPLICA_URL = ""
    # Then the catalogue says why and which command provides one
    by_name = {s["name"]: s for s in client.get("/api/scenarios").json()["scenarios"]}
    assert "python manage.py lifecycle standby start" in by_name["replica-read"]["unavailable"]
    assert by_name["cached-response"]["unavailable"] is None
    # And starting it is a 409 that says the same, with no run made
    response = post(client, "/api/scenarios/replica-read/runs", "{}")
    assert response.status_code == 409
    assert "needs LAB_REPLICA_URL" in response.json()["error"]
    assert Run.objects.count() == 0
    # And a lab task asking for the replica without one is a 400 naming the command
    made = post(client, "/lab/api/tasks", json.dumps({"config": {"replica_read": True}}))
    assert made.status_code == 400 and "lifecycle standby start" in made.json()["error"]
    # And the home page shows it unavailable, without a Run button
    page = client.get("/").content.decode()
    assert 'data-testid="unavailable-replica-read"' in page
    assert 'data-testid="run-replica-read"' not in page
