"""Facts written once in Python that SQL or other code must still agree with."""

from __future__ import annotations

import re

import pytest

from lifecycle import sql
from lifecycle.events import NOTIFY_CHANNEL

pytestmark = pytest.mark.unit

MIGRATIONS = sql.HERE.parent / "migrations" / "sql"


def test_the_event_tables_trigger_notifies_the_channel_the_feed_listens_on() -> None:
    # Given the frozen migration SQL that (re)defines the event table's NOTIFY
    sent = {
        path.name: re.findall(r"pg_notify\('([a-z_]+)', NEW\.id::text\)", path.read_text())
        for path in sorted(MIGRATIONS.glob("*.sql"))
    }
    sending = {name: channels for name, channels in sent.items() if channels}
    # Then the newest one, which the database runs, sends on the constant the code LISTENs to
    assert sending, "no migration sends the event table's NOTIFY"
    newest = max(sending)
    assert sending[newest] == [NOTIFY_CHANNEL]
