"""The checker's two causes of a stale status outside the application's own code: a hot
standby whose replay lags (``replica``) and a cache in front of the API
(``response_cache``), with the histories they must not be confused with."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lifecycle.check.registry import CAUSES, KINDS, RULES, fix_for
from lifecycle.check.rules import check
from lifecycle.events import EventRecord
from lifecycle.statuses import COMPLETED, RUNNING
from tests import histories
from tests.histories import PROPERTY, History, Plan, begin, end, kinds, live, plans

pytestmark = pytest.mark.unit


def standby_read(
    h: History,
    client: str = "ui",
    *,
    version: int,
    replayed_ms: int | None = -400,
    after_ms: int = 300,
    **kw: object,
) -> EventRecord:
    """An API read served by a standby: the snapshot is the standby's (the commit it has
    not replayed shows as in progress), replayed up to ``replayed_ms`` from now."""
    read = h.read(client, version=version, after_ms=after_ms, **kw)  # type: ignore[arg-type]
    txid = h.versions[-1].txid
    read.body["snapshot"] = f"{txid - 2}:{txid + 1}:{txid}"  # the newest still in progress
    read.body["standby"] = True
    if replayed_ms is not None:
        read.body["replayed_at"] = (read.at + timedelta(milliseconds=replayed_ms)).isoformat()
    return read


# --- replica --------------------------------------------------------------------------------


def test_a_standby_read_behind_the_primarys_commit_is_a_replica_stale_read() -> None:
    # Given an API reading a standby that has not replayed COMPLETED yet
    h = histories.started()
    done = histories.finish(h)
    reads = [standby_read(h, version=1, after_ms=150 if n else 300) for n in range(2)]

    # When
    f = histories.the_stale_read(h.events, "replica")

    # Then one stale read, caused by the replica, naming the commit, the read and the lag
    assert f.events == tuple(sorted([done.id, *(r.id for r in reads)]))
    assert "from a standby" in f.message
    assert f"transaction {done.txid} had committed COMPLETED on the primary" in f.message
    assert "its replay had reached only" in f.message and "short of that commit" in f.message
    assert "primary" in f.fix


def test_a_replay_stamped_after_the_change_is_not_called_short_of_it() -> None:
    # Given a standby read whose replay stamp (another transaction's commit) is 100 ms after
    # the change: the server records no commit times, so this commit's own time is unknown
    h = histories.started()
    histories.finish(h)
    standby_read(h, version=1, after_ms=300, replayed_ms=-200)

    # When
    f = histories.the_stale_read(h.events, "replica")

    # Then the message says the replay had not applied the commit, never a negative lag
    assert "had not yet applied that commit" in f.message
    assert "short of" not in f.message and " -" not in f.message


def test_a_replica_lag_is_a_floor_without_commit_times_and_exact_with_them() -> None:
    for recorded in (False, True):
        h = histories.started()
        done = histories.finish(h)
        if recorded:
            done.body["committed_at"] = done.at.isoformat()
        standby_read(h, version=1, after_ms=300, replayed_ms=-400)

        f = histories.the_stale_read(h.events, "replica")

        assert "ms short of that commit" in f.message
        assert ("at least" in f.message) is not recorded, f.message


def test_a_replicas_read_is_not_called_an_old_snapshot() -> None:
    # Given the same read twice: from a standby, and from the primary with an old snapshot
    for standby in (True, False):
        h = histories.started()
        histories.finish(h)
        read = standby_read(h, version=1)
        old = f"{h.versions[-1].txid}:{h.versions[-1].txid}:"
        read.body["snapshot"] = old  # taken before COMPLETED's writer began
        if not standby:
            del read.body["standby"], read.body["replayed_at"]

        # When
        findings = check(h.events)

        # Then a standby's read is the replica's, never an old snapshot
        assert kinds(findings) == ["stale_read"]
        assert findings[0].cause == ("replica" if standby else "old_snapshot")


def test_a_standby_read_that_began_before_the_commit_is_not_stale() -> None:
    # Given a standby read 100 ms after the write: the commit may not have happened yet
    h = histories.started()
    h.commit(COMPLETED)
    standby_read(h, version=1, after_ms=100)

    # Then nothing is claimed
    assert check(h.events) == []


def test_a_standby_read_of_the_newest_commit_is_clean() -> None:
    h = histories.started()
    h.commit(COMPLETED)
    read = standby_read(h, version=-1, replayed_ms=-5)
    read.body["snapshot"] = h.snapshot()
    h.broker("ack")
    assert check(h.events) == []


@PROPERTY
@given(plans, st.data())
def test_an_inserted_replica_read_is_found_alone_and_never_as_old_snapshot(
    plan: Plan, data: st.DataObject
) -> None:
    h = live(plan)
    version = data.draw(st.integers(0, len(h.versions) - 2))
    replayed = data.draw(st.sampled_from([None, -400, -5000]))
    standby_read(h, "replica", version=version, replayed_ms=replayed)

    findings = check(h.events)

    assert kinds(findings) == ["stale_read"]
    assert findings[0].cause == "replica"
    assert "old_snapshot" not in {f.cause for f in findings}


# --- response cache -------------------------------------------------------------------------


def cached_polls(
    h: History, status: str, n: int = 3, run: int | None = None, **headers: str
) -> list[EventRecord]:
    """Probe reads answered by a cache: no API read beside them."""
    polls = [h.probe(status, run=run, after_ms=300 if i == 0 else 100) for i in range(n)]
    for p in polls:
        if headers:
            p.body["headers"] = {k.replace("_", "-"): v for k, v in headers.items()}
    return polls


def test_probe_reads_no_api_read_served_while_newer_was_committed_are_a_response_cache() -> None:
    # Given an API that reports its reads, and a poll whose answer a cache kept
    h = History()
    begin(h)
    h.read()  # the poll that filled the cache reached the API
    h.broker("start")
    h.commit(RUNNING)
    done = histories.finish(h)
    polls = cached_polls(h, "PENDING", cache_control="max-age=2", age="1")
    end(h)

    # When
    f = histories.the_stale_read(h.events, "response_cache")

    # Then one stale read, caused by a response cache, quoting what the response said
    assert f.events == tuple(sorted([done.id, *(p.id for p in polls)]))
    assert "no API read was made while they were in flight" in f.message
    assert "a cache between the client and the API answered" in f.message
    assert "(the response said Age: 1; Cache-Control: max-age=2)" in f.message
    assert "no-store" in f.fix


def test_a_probe_read_older_than_what_the_api_had_served_is_a_response_cache() -> None:
    # Given the API serving COMPLETED, then a poll (sent 20 ms later) getting RUNNING
    h = histories.started()
    h.read(version=1)
    h.commit(COMPLETED)
    h.read(after_ms=150)
    poll = h.probe(RUNNING, after_ms=20)
    h.read(after_ms=1)  # the API, reached meanwhile by another client, still says COMPLETED

    # When
    f = histories.the_stale_read(h.events, "response_cache")

    # Then
    assert poll.id in f.events
    assert "returned COMPLETED, not RUNNING" in f.message


def test_a_service_that_does_not_report_reads_is_never_a_response_cache() -> None:
    # Given the same cached polls, from a service whose API reports no reads at all
    h = histories.started()
    histories.finish(h)
    cached_polls(h, "PENDING")

    # Then nothing is said of a cache
    assert "response_cache" not in {f.cause for f in check(h.events)}


def test_a_poll_the_api_served_is_not_a_response_cache() -> None:
    # Given a poll that the API answered in flight, with the same (old) status
    h = History()
    begin(h)
    h.read()
    h.broker("start")
    h.commit(RUNNING)
    h.commit(COMPLETED)
    h.probe(RUNNING, after_ms=300)
    h.read(version=1, snapshot=False, after_ms=1)

    # Then the API's own read is what was stale, and no cache is blamed
    assert "response_cache" not in {f.cause for f in check(h.events)}


@PROPERTY
@given(plans, st.booleans())
def test_inserted_cached_polls_are_a_response_cache_only_where_the_api_reports_reads(
    plan: Plan, api_reports: bool
) -> None:
    h = live(plan)
    if api_reports:
        h.read("ui")
    else:
        h.events = [e for e in h.events if e.source != "api"]
    old = h.versions[0].status
    cached_polls(h, old, n=2, run=99)  # a run of their own: not a run going back

    causes = [f.cause for f in check(h.events)]

    if api_reports:
        assert causes == ["response_cache"]
    else:
        assert "response_cache" not in causes


def test_histories_of_the_property_tests_have_api_reads_that_reach_the_api() -> None:
    # The clean generated histories stay clean with the new rules (their probe reads are
    # fresh), which test_histories_that_obey_the_lifecycle_have_no_finding checks; here a
    # fixed one, with API reads beside every poll.
    plan = Plan(1, COMPLETED, 812, 1, True, False, [["ui", "probe"], ["probe"]])
    assert check(live(plan).events) == []


# --- the registry -----------------------------------------------------------------------------


def test_every_kind_and_cause_has_a_fix_line_in_one_registry() -> None:
    assert [r.kind for r in RULES] == list(KINDS)
    assert CAUSES["stale_read"] == (
        "cached_object",
        "old_snapshot",
        "cached_response",
        "replica",
        "response_cache",
    )
    for rule in RULES:
        lines = [rule.fix, *(c.fix for c in rule.causes)]
        assert all(0 < len(line) <= 200 for line in lines), rule.kind
    assert "populate_existing" in fix_for("stale_read", "cached_object")
    assert "READ COMMITTED" in fix_for("stale_read", "old_snapshot")
    assert "reach the actor" in fix_for("swallowed_error")
    assert fix_for("no_such_kind") == ""
