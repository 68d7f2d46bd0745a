"""The relay's pipe format and its choice of mode (``lifecycle.client.link``): pure logic."""

from __future__ import annotations

import marshal
import struct
from datetime import UTC, datetime

import pytest

from lifecycle.client import link
from lifecycle.client.publisher import Publisher


def test_frames_are_taken_whole_and_a_partial_one_waits():
    data = link.frame(("e", 0, [(1, ("broker", "start", "t", None, 1.5, None, {"n": 1}))]))
    data += link.frame(("s", 1, [], 1, 0, 0, 0, True, False))
    buffer = bytearray(data[:-3])
    first = link.frames(buffer)
    assert [f[0] for f in first] == ["e"]
    buffer += data[-3:]
    assert [f[0] for f in link.frames(buffer)] == ["s"]
    assert buffer == bytearray()


def test_a_length_past_the_limit_is_a_broken_pipe_not_a_frame():
    buffer = bytearray(struct.pack(">I", link.MAX_FRAME + 1) + b"x")
    with pytest.raises(ValueError):
        link.frames(buffer)


def test_a_frame_is_marshal_never_a_pickle():
    payload = bytes(link.frame(("g", [])))[4:]
    assert marshal.loads(payload) == ("g", [])
    with pytest.raises(ValueError):
        link.frame(("e", 0, [(1, ("broker", "start", "t", None, 1.0, None, {"x": object()}))]))


def test_an_entry_marshal_cannot_carry_becomes_its_message():
    when = datetime(2024, 1, 2, tzinfo=UTC)
    publisher = Publisher(url="amqp://guest:guest@127.0.0.1:1/%2F", namespace="nowhere")
    entry = (7, ("broker", "start", "t", None, 0.0, None, {"w": when}))
    ticket, message = publisher._portable(entry)
    assert ticket == 7 and message["body"] == {"w": str(when)} and message["task"] == "t"
    assert publisher._portable((8, ("broker", "start", "t", None, float("nan"), None, {}))) is None


@pytest.mark.parametrize(
    ("setting", "in_worker", "wanted"),
    [
        (None, False, False),
        (None, True, True),
        ("auto", True, True),
        ("process", False, True),
        ("thread", True, False),
        (" Thread ", True, False),
        ("bogus", True, True),
    ],
)
def test_the_mode(monkeypatch, setting, in_worker, wanted):
    if setting is None:
        monkeypatch.delenv("LIFECYCLE_RELAY", raising=False)
    else:
        monkeypatch.setenv("LIFECYCLE_RELAY", setting)
    monkeypatch.setattr(link, "in_worker", in_worker)
    assert link.wanted() is wanted


def test_a_report_releases_exactly_the_events_up_to_its_ticket():
    # Given events handed to a relay, their tickets rising with holes (dropped ones)
    publisher = Publisher(url="amqp://guest:guest@127.0.0.1:1/%2F", relay=True)
    handing = link.Link(publisher)
    tickets = [1, 2, 3, 5, 8, 9, 13, 14, 15]
    handing.sent.extend((t, ("broker", "start", f"t{t}", None, 1.5, None, {})) for t in tickets)
    publisher._held, publisher._last_ticket = len(tickets), 15

    def report(upto: int, lost: list[int] | None = None) -> list[int]:
        handing._status(upto, lost or [], 0, 0, 0, 0, True, True)
        return [entry[0] for entry in handing.sent]

    # When the relay says every ticket up to one is done: those, and only those, are released
    # (fewer than half of those held: popped; more: the rest kept as a new run)
    assert report(0) == tickets
    assert report(4) == [5, 8, 9, 13, 14, 15] and publisher._confirmed == 4
    assert report(7) == [8, 9, 13, 14, 15] and publisher._confirmed == 7  # up to a hole
    assert report(7, lost=[9]) == [8, 13, 14, 15] and 9 in publisher._lost  # relay's drop
    assert report(8) == [13, 14, 15] and publisher._confirmed == 12  # up to a ticket it holds
    assert report(14) == [15] and publisher._confirmed == 14  # most of them at once
    assert report(15) == [] and publisher._held == 0 and publisher._confirmed == 15
