"""An exported timeline imported as a read-only task: a bug report as one file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from lifecycle.models import Event, ImportedTask

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def overwritten_task(key: str) -> None:
    """FAILED committed, then COMPLETED over it: the checker says terminal_overwrite."""
    table = {"table": "public.lab_task"}
    for n, (kind, status, old) in enumerate(
        [
            ("insert", "PENDING", None),
            ("update", "RUNNING", "PENDING"),
            ("update", "FAILED", "RUNNING"),
            ("update", "COMPLETED", "FAILED"),
        ]
    ):
        Event.objects.create(
            task_key=key,
            source="db",
            kind=kind,
            status=status,
            txid=700 + n,
            at=T0 + timedelta(milliseconds=10 * n),
            body={**table, "old_status": old, "new_status": status, "values": {"note": "<b>x</b>"}},
        )


def test_an_exported_timeline_imports_as_a_read_only_copy(client, postgres):
    overwritten_task("bug/42")
    exported = client.get("/api/tasks/bug%2F42/timeline?expected=FAILED").json()

    # When the file is imported
    response = client.post(
        "/api/import", data=json.dumps(exported), content_type="application/json"
    )

    # Then it is a task of its own with the same history and the same findings
    assert response.status_code == 201, response.content
    made = response.json()
    assert made["task"].startswith("imported/") and made["task"].endswith("/bug/42")
    assert made["events"] == len(exported["events"]) + 1  # and the expectation it was judged by
    copy = client.get(f"/api/tasks/{made['task']}/timeline").json()
    assert [f["kind"] for f in copy["findings"]] == [f["kind"] for f in exported["findings"]]
    assert [(e["source"], e["kind"], e["status"], e["at"]) for e in copy["events"][:4]] == [
        (e["source"], e["kind"], e["status"], e["at"]) for e in exported["events"]
    ]
    page = client.get(made["url"]).content.decode()
    assert 'data-testid="imported"' in page and "bug/42" in page
    assert "ws-connect" not in page  # nothing more comes: not live
    assert "&lt;b&gt;x&lt;/b&gt;" in page or "<b>x</b>" not in page

    # And nothing may add to it
    extra = {
        "schema": 1,
        "uuid": "0b5e1b2e-6b55-4a43-9f4e-0e8a8a1c1d11",
        "task": made["task"],
        "source": "api",
        "kind": "read",
        "at": T0.isoformat(),
        "body": {},
    }
    refused = client.post("/api/events", data=json.dumps(extra), content_type="application/json")
    assert refused.status_code == 400
    assert "is an imported copy: it is read-only" in refused.json()["rejected"][0]["error"]


def test_a_bad_file_is_refused_whole_with_its_reasons(client, postgres):
    overwritten_task("bug/43")
    exported = client.get("/api/tasks/bug%2F43/timeline").json()
    exported["events"][1]["source"] = "mystery"
    exported["events"][2]["at"] = "yesterday"

    response = client.post(
        "/api/import", data=json.dumps(exported), content_type="application/json"
    )

    assert response.status_code == 400
    reasons = response.json()["reasons"]
    assert reasons == [
        "event 1: unknown source 'mystery'",
        "event 2: at 'yesterday' is not an ISO 8601 time",
    ]
    assert not ImportedTask.objects.exists()
    assert not Event.objects.filter(task_key__startswith="imported/").exists()
    for body in ("[]", '{"task": "x"}', "not json"):
        bad = client.post("/api/import", data=body, content_type="application/json")
        assert bad.status_code == 400, body


def test_a_nul_in_an_events_text_or_the_expectation_refuses_the_file_in_our_words(client, postgres):
    overwritten_task("bug/44")
    exported = client.get("/api/tasks/bug%2F44/timeline").json()
    exported["events"][1]["body"]["note"] = "a\u0000b"
    exported["events"][2]["status"] = "FAIL\u0000ED"

    response = client.post(
        "/api/import", data=json.dumps(exported), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["reasons"] == [
        "event 1: body holds a NUL character",
        "event 2: status holds a NUL character",
    ]
    # An expectation the event table cannot hold refuses the file too (it was a 500)
    exported = client.get("/api/tasks/bug%2F44/timeline").json()
    response = client.post(
        "/api/import",
        data=json.dumps({**exported, "expected": "DONE\u0000"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["reasons"] == [
        "its 'expected' cannot be stored: status holds a NUL character"
    ]
    assert not ImportedTask.objects.exists()
    # And an original page's URL holding one is not kept; the copy is made
    response = client.post(
        "/api/import",
        data=json.dumps({**exported, "url": "http://x/\u0000"}),
        content_type="application/json",
    )
    assert response.status_code == 201
    assert ImportedTask.objects.get().source_url == ""


def test_the_home_pages_form_imports_a_file(client, postgres):
    overwritten_task("bug/44")
    exported = client.get("/api/tasks/bug%2F44/timeline").content
    upload = SimpleUploadedFile("bug.json", exported, content_type="application/json")

    response = client.post("/import", {"file": upload})

    assert response.status_code == 302
    assert response["Location"].startswith("/tasks/imported/")
    assert 'data-testid="import-form"' in client.get("/").content.decode()
    bad = client.post("/import", {"file": SimpleUploadedFile("x.json", b"{]")})
    assert bad.status_code == 400 and "the file is not JSON" in bad.content.decode()


def test_a_viewer_may_not_import(anonymous_client, postgres, settings):
    settings.LIFECYCLE_PUBLIC_READ = True
    response = anonymous_client.post("/api/import", data="{}", content_type="application/json")
    assert response.status_code in (401, 403)
