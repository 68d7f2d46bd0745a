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


@pytest.mark.parametrize(
    ("seconds", "span", "age"),
    [
        (0.04, "0.0 s", "0 s"),
        (59.4, "59.4 s", "59 s"),
        (90, "90.0 s", "1 min"),
        (5400, "90 min", "1 h"),
        (7200, "2.0 h", "2 h"),
        (3 * 86400, "3.0 days", "3 d"),
    ],
)
def test_a_span_and_an_age_are_said_with_the_same_units(
    seconds: float, span: str, age: str
) -> None:
    from dashboard.render import duration

    assert duration(seconds) == span
    assert duration(seconds, whole=True) == age


def test_every_kind_of_the_registry_has_one_function_that_finds_it_and_no_other() -> None:
    import inspect

    from lifecycle.check import registry, rules

    # Given the registry's kinds and the checker's registered functions
    assert set(rules.FINDERS) == set(registry.KINDS)
    # Then no function of the checker yields findings without being registered
    finders = {
        name
        for name, fn in inspect.getmembers(rules, inspect.isfunction)
        if fn.__module__ == rules.__name__
        and fn.__annotations__.get("return") == "Iterator[Finding]"
        and list(inspect.signature(fn).parameters) == ["h"]
    }
    registered = {fn.__name__ for fn in rules.finders()}
    called = {"_stale_reads", "_replica_reads", "_response_cache"}  # the stale read's causes
    assert finders - called == registered
    # And a kind cannot get a second function, nor a function a kind the registry lacks
    with pytest.raises(ValueError, match="already"):
        rules.finds("stuck")(rules.FINDERS["stuck"])
    with pytest.raises(ValueError, match="lacks"):
        rules.finds("no_such_kind")(rules.FINDERS["stuck"])


def test_what_rests_on_absence_is_said_by_the_registry() -> None:
    from lifecycle.check import registry, rules

    assert rules.RESTS_ON_ABSENCE is registry.RESTS_ON_ABSENCE
    assert registry.RESTS_ON_ABSENCE == {"duplicate_execution", "stuck"}


def test_the_lanes_are_named_once_and_every_vocabulary_reads_them() -> None:
    from dashboard import render
    from lifecycle.timeline import compare, layout

    names = [lane.name for lane in layout.LANE_LIST]
    # The timeline's titles, the web's nouns: one entry a lane, in the lanes' order
    assert [name for name, _ in layout.LANES] == names
    assert list(render.LANE_NOUNS) == names
    # The compare page tags a step with its lane's word, and folds all reads into "reads"
    assert compare.LANE_TITLES == {
        "probe": "probe",
        "db": "commit",
        "broker": "broker",
        "log": "log",
        "reads": "reads",
    }


def test_an_outbox_notifies_the_channel_its_follower_listens_on() -> None:
    from lifecycle.capture.outbox import CHANNEL

    text = (sql.HERE / "outbox.sql").read_text()
    sent = set(re.findall(r"pg_notify\('([a-z_]+)'", text))
    heard = set(re.findall(r"^LISTEN ([a-z_]+)", text, re.MULTILINE))
    assert sent == heard == {CHANNEL}
