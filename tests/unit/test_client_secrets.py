"""The client never shows a secret: the pytest fixture's repr and report, the publisher's
repr, and any URL it prints."""

from __future__ import annotations

import pytest

from lifecycle.client.config import redact_url
from lifecycle.client.publisher import Publisher
from lifecycle.client.pytest_plugin import Lifecycle, Watched, report_text

pytestmark = pytest.mark.unit

TOKEN = "lci_s3cr3t-t0ken-value"


def test_the_fixtures_repr_hides_the_token_and_a_urls_password() -> None:
    # Given the fixture as a failing test's report prints it
    found = Lifecycle(url="http://ci:hunter2@dash.example:8000", token=TOKEN)
    found.watched.append(Watched("task-1", "FAILED"))
    shown = repr(found)
    # Then neither the token nor the password is there, but what helps is
    assert TOKEN not in shown and "hunter2" not in shown
    assert "token='***'" in shown and "ci:***@dash.example:8000" in shown
    assert "task-1" in shown
    assert "token=None" in repr(Lifecycle(url="http://127.0.0.1:8000"))


def test_the_report_and_its_errors_show_no_password() -> None:
    found = Lifecycle(url="http://ci:hunter2@127.0.0.1:1", token=TOKEN, timeout=0.1)
    watched = found.watch("task-2")  # nothing listens there
    found.settle_one(watched)
    text = report_text(found, [watched])
    assert watched.error and "could not be reached" in watched.error
    assert "hunter2" not in text and TOKEN not in text and "ci:***@127.0.0.1:1" in text


def test_the_publishers_repr_hides_the_amqp_password() -> None:
    publisher = Publisher("amqp://app:pa55word@rabbit:5672/%2F", "ns")
    assert "pa55word" not in repr(publisher) and "app:***@rabbit:5672" in repr(publisher)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "amqp://guest:***@127.0.0.1:5672/%2F"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        (
            "postgresql://u@h/db?password=x&sslmode=require",
            "postgresql://***@h/db?password=***&sslmode=require",
        ),
        ("http://h/?token=abc", "http://h/?token=***"),
        ("http://:only@h", "http://:***@h"),
        ("https://lci_t0ken@dash.example/", "https://***@dash.example/"),
        ("http://h/?a=1;password=x", "http://h/?a=1;password=***"),
        ("http://h/?X-Amz-Signature=abc&b=2", "http://h/?X-Amz-Signature=***&b=2"),
        ("http://h/#token=abc", "http://h/#***"),
        ("http://[::1", "<a URL that could not be parsed>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_url_urllib_cannot_use_is_an_unreachable_dashboard_not_a_crash() -> None:
    # Given a password in the URL with no port: urllib takes "s3cret@127.0.0.1" for a port
    found = Lifecycle(url="http://ci:s3cret@127.0.0.1", token=TOKEN, timeout=0.1)
    watched = found.watch("task-3", expect="FAILED")  # posts the expectation: must not raise
    found.settle_one(watched)
    text = report_text(found, [watched])
    assert watched.error and "could not be reached" in watched.error
    assert "s3cret" not in text + watched.error and TOKEN not in text
