"""The pytest plugin's report: each finding's sentence, then its fix line from the JSON."""

from __future__ import annotations

import pytest

from lifecycle.client.pytest_plugin import Lifecycle, Watched, report_text

pytestmark = pytest.mark.unit


def test_each_finding_in_the_report_is_followed_by_its_fix_line() -> None:
    # Given a watched task whose timeline holds a replica's stale read, with its fix
    found = Lifecycle(url="http://127.0.0.1:8000")
    timeline = {
        "url": "http://127.0.0.1:8000/tasks/t-1",
        "status": "done",
        "events": [],
        "findings": [
            {
                "kind": "stale_read",
                "cause": "replica",
                "events": [4, 9],
                "message": "The read at 12:00:01.000 returned working, from a standby.",
                "fix": "Read your own writes from the primary. " + "x" * 500,
            },
            {"kind": "stuck", "cause": None, "events": [2], "message": "Stuck."},
        ],
    }

    # When the report is made
    text = report_text(found, [Watched("t-1", timeline=timeline)])

    # Then the fix line sits under its sentence, bounded; a finding without one has none
    lines = text.splitlines()
    at = lines.index(
        "  stale_read (replica): The read at 12:00:01.000 returned working, from a standby."
    )
    assert lines[at + 1].startswith("    fix: Read your own writes from the primary.")
    assert len(lines[at + 1]) <= len("    fix: ") + 300
    assert "fix:" not in "\n".join(lines[lines.index("  stuck: Stuck.") :])
