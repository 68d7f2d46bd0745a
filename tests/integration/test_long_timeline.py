"""A long history's page: the outline, the windows and the folded runs of reads, against
the real database. Walking every window and opening every run must give back the whole
history, each event once."""

from __future__ import annotations

import re
from html import unescape

import pytest

from lifecycle.check import findings
from lifecycle.models import Event
from lifecycle.store import outline
from tests.histories import stored_long_task

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

EVENTS = 5000
ROW = re.compile(r'<li class="ev [^"]*" id="(?:event|run)-(\d+)"')
RUN = re.compile(r'id="run-(\d+)-summary"[^>]*data-count="(\d+)" data-last-id="(\d+)"')
WINDOW_URL = re.compile(r'<li class="window"[^>]*data-url="([^"]+)"')


@pytest.fixture
def long_task(postgres) -> str:
    return stored_long_task("long", EVENTS)


def all_ids(key: str) -> list[int]:
    return list(Event.objects.filter(task_key=key).values_list("id", flat=True))


def shown(client, html: str, key: str) -> list[int]:
    """Every event the html shows: its rows, the reads of its runs (opened), and the
    windows it leaves for later (loaded, recursively)."""
    ids = [int(i) for i in ROW.findall(html)]
    runs = RUN.findall(html)
    folded = {int(first) for first, _, _ in runs}
    ids = [i for i in ids if i not in folded]  # a run's row stands for its reads
    for first, count, last in runs:
        reads = client.get(f"/reads/{key}?first={first}&last={last}").content.decode()
        members = [int(i) for i in ROW.findall(reads)]
        assert len(members) == int(count) and members[0] == int(first)
        ids += members
    for url in WINDOW_URL.findall(html):
        response = client.get(unescape(url))
        assert response.status_code == 200
        ids += shown(client, response.content.decode(), key)
    return ids


def test_a_long_history_opens_as_an_outline_and_its_windows_give_back_every_event(
    client, long_task
):
    # Given a task of 5,000 events (commits, reads of three clients, probe polls,
    # warnings, retried attempts)
    page = client.get(f"/tasks/{long_task}").content.decode()

    # Then the page has the outline: every lane's count, and every commit one click away
    assert 'data-testid="outline"' in page
    counts = re.findall(r'<li class="lane-\w+" data-lane="(\w+)"><strong>([\d,]+)</strong>', page)
    assert sum(int(n.replace(",", "")) for _, n in counts) == EVENTS
    commits = Event.objects.filter(task_key=long_task, source="db").count()
    assert f"({commits:,})" in page

    # And it renders only its first and last events, the rest in windows
    rows = ROW.findall(page)
    assert len(rows) <= outline.HEAD + outline.TAIL
    assert 'data-testid="window"' in page
    assert len(page) < 1_500_000

    # And walking every window and opening every run gives back each event exactly once
    ids = shown(client, page, long_task)
    assert sorted(ids) == sorted(all_ids(long_task))


def test_an_event_s_cursor_finds_the_window_that_holds_it(client, long_task):
    # Given an event from the middle of the history, which the page does not show
    middle = sorted(all_ids(long_task))[EVENTS // 2]
    page = client.get(f"/tasks/{long_task}").content.decode()
    assert f'id="event-{middle}"' not in page

    # When the page asks where it is (as lifecycle.js does for #event-N)
    cursor = client.get(f"/api/events/{middle}").json()["cursor"]
    at_us, event_id = outline.parse_cursor(cursor)  # type: ignore[misc]
    assert event_id == middle

    # Then exactly one window's range holds it, and loading that window shows it
    holding = []
    for after, before, url in re.findall(
        r'data-after="([^"]*)" data-before="([^"]*)" data-url="([^"]+)"', page
    ):
        low = outline.parse_cursor(after) if after else None
        high = outline.parse_cursor(before) if before else None
        if (low is None or low < (at_us, event_id)) and (high is None or (at_us, event_id) < high):
            holding.append(unescape(url))
    assert len(holding) == 1
    window = client.get(holding[0]).content.decode()
    # (in its rows, or in a window that window leaves for later, or in a run of reads)
    assert middle in shown(client, window, long_task)


def test_the_page_shows_the_maintainer_s_findings_and_their_events_stand_alone(client, long_task):
    # Given the maintainer's check of the long history (its last read is a stale one)
    page = client.get(f"/tasks/{long_task}").content.decode()
    assert 'data-testid="findings-note"' in page  # not checked yet, and it says so
    findings.refresh([long_task])
    page = client.get(f"/tasks/{long_task}").content.decode()
    assert 'data-testid="findings-note"' not in page
    kinds = re.findall(r'data-testid="finding" data-kind="(\w+)"', page)
    assert kinds, "the history's finding"
    # Then each finding's events are linked, and each is a row of its own where shown
    proof = [int(i) for i in re.findall(r'Proved by (?:<a href="#event-(\d+)")', page)]
    assert proof
    stored = findings.latest_stored(long_task, None)
    last_read = max(i for f in stored for i in f.events)
    assert f'id="event-{last_read}"' in page  # the last events: in the page


def test_bad_places_are_refused_and_a_run_of_another_task_is_not_found(client, long_task):
    assert client.get(f"/windows/{long_task}?after=yesterday").status_code == 400
    assert client.get(f"/windows/{long_task}?before=1.2.3").status_code == 400
    assert client.get(f"/reads/{long_task}?first=x&last=1").status_code == 400
    other = Event.objects.create(task_key="another", source="api", kind="read")
    assert client.get(f"/reads/{long_task}?first={other.id}&last={other.id}").status_code == 404
    assert client.get(f"/commits/{long_task}?after=1.1").status_code == 400


def test_a_long_page_s_parts_need_the_right_to_read(anonymous_client, long_task):
    for url in (f"/windows/{long_task}", f"/reads/{long_task}?first=1&last=1"):
        response = anonymous_client.get(url)
        assert response.status_code in (302, 401, 403)


def test_a_long_json_timeline_pages_from_the_time_index_and_keeps_every_event(client, long_task):
    findings.refresh([long_task])
    seen, after, pages = [], None, 0
    while True:
        url = f"/api/tasks/{long_task}/timeline?limit=1500" + (f"&after={after}" if after else "")
        body = client.get(url).json()
        assert body["total"] == EVENTS and body["findings"]
        seen += [(e["at"], e["id"]) for e in body["events"]]
        pages += 1
        after = body["next"]
        if after is None:
            break
    assert pages == 4 and len(seen) == EVENTS
    assert seen == sorted(seen)  # time order, ties by id
    assert sorted(i for _, i in seen) == sorted(all_ids(long_task))
