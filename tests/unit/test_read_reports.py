"""What a reported read carries: ``cached`` for an answer from the application's own cache
(with the version of the read that filled it), and, inside ``deferred_reads``, the status of
the response it ended in. The ingestor keeps a ``cached`` that is true or false and drops
anything else, keeping the read."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

from lifecycle import events
from lifecycle.client import carry, reads
from tests.published import Published

pytestmark = pytest.mark.unit


def bodies(published: Published) -> list[dict[str, Any]]:
    return [m["body"] for m in published.messages]


def test_a_read_outside_a_request_is_published_at_once_as_answered_200(
    published: Published,
) -> None:
    reads.report_read("t-1", "RUNNING", xmin=10, snapshot="10:11:")
    (body,) = bodies(published)
    assert (body["http_status"], body["cached"], body["xmin"]) == (200, False, 10)


def test_a_cached_answer_is_reported_with_the_version_that_filled_the_cache(
    published: Published,
) -> None:
    # Given the version a read returned, kept with a cached answer (pickled, as caches do)
    version = pickle.loads(pickle.dumps(reads.ReadVersion(812, "810:813:", "PENDING")))
    # When a later request is answered from that cache
    reads.report_cached("t-1", version, client="web-2", path="/jobs/1")
    # Then the read names the cached status, its version and snapshot, and says cached
    (message,) = published.messages
    assert message["status"] == "PENDING"
    assert {k: message["body"][k] for k in ("xmin", "snapshot", "cached", "client", "path")} == {
        "xmin": 812,
        "snapshot": "810:813:",
        "cached": True,
        "client": "web-2",
        "path": "/jobs/1",
    }


def test_a_cache_filled_without_a_version_reports_nothing(published: Published) -> None:
    reads.report_cached("t-1", None)
    assert published.messages == []


def test_reads_held_in_a_request_take_the_responses_status(published: Published) -> None:
    # Given a request in which two reads are made, one naming its own status
    with reads.deferred_reads() as held:
        reads.report_read("t-1", "RUNNING", xmin=5)
        reads.report_read("t-1", "RUNNING", xmin=5, http_status=304)
        # Then nothing is published while the response is not known
        assert published.messages == []
    # When the view's response turns out to be a 500
    held.report(500)
    # Then each read says so, except the one that named its own, stamped when made
    assert [b["http_status"] for b in bodies(published)] == [500, 304]
    # And a read after the request is published at once again
    reads.report_read("t-1", "RUNNING")
    assert [b["http_status"] for b in bodies(published)] == [500, 304, 200]


def test_a_report_is_made_once(published: Published) -> None:
    with reads.deferred_reads() as held:
        reads.report_read("t-1", "RUNNING")
    held.report(200)
    held.report(500)
    assert [b["http_status"] for b in bodies(published)] == [200]


def test_reads_from_threads_that_carry_the_requests_context_are_held(
    published: Published,
) -> None:
    async def view() -> None:
        await asyncio.to_thread(reads.report_read, "t-1", "A")

    with reads.deferred_reads() as held:
        asyncio.run(view())
        carry(reads.report_read)("t-1", "B")
        assert published.messages == []
    held.report(404)
    assert sorted((m["status"], m["body"]["http_status"]) for m in published.messages) == [
        ("A", 404),
        ("B", 404),
    ]


def test_held_reads_wait_for_rabbitmq_once_if_one_asked(published: Published) -> None:
    with reads.deferred_reads() as held:
        reads.report_read("t-1", "A")
        reads.report_read("t-1", "B", confirm=0.05)
        assert held.waits
    held.report(200)
    assert published.waits == [(2, 0.05)]  # the last read's confirm: the first one's with it


def test_reporting_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        raise RuntimeError("RabbitMQ client exploded")

    monkeypatch.setattr(reads, "get_publisher", broken)
    reads.report_read("t-1", "A")
    with reads.deferred_reads() as held:
        reads.report_read("t-1", "A")
    held.report(200)


def message(body: dict[str, Any]) -> bytes:
    """A read's message as a publisher sends it."""
    made = events.make_message(source="api", kind="read", task="t-1", status="RUNNING", body=body)
    return events.encode(made)


@pytest.mark.parametrize("cached", [True, False])
def test_the_ingestor_keeps_a_true_or_false_cached(cached: bool) -> None:
    assert events.parse_message(message({"xmin": 5, "cached": cached})).body["cached"] is cached


@pytest.mark.parametrize("cached", ["yes", 1, 0, None, [], {"x": 1}])
def test_the_ingestor_drops_any_other_cached_and_keeps_the_read(cached: Any) -> None:
    found = events.parse_message(message({"xmin": 5, "cached": cached}))
    assert found.body == {"xmin": 5}
    assert (found.source, found.kind, found.status) == ("api", "read", "RUNNING")


def test_a_status_is_reported_as_its_text() -> None:
    from enum import Enum

    class Status(Enum):
        DONE = "DONE"

    assert [reads.status_text(v) for v in (Status.DONE, "DONE", 3, None)] == [
        "DONE",
        "DONE",
        "3",
        None,
    ]
