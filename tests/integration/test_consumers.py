"""Websocket consumers against the real database and the process's live feed."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from dashboard.asgi import application
from lifecycle.models import Event
from lifecycle.people import accounts
from lifecycle.store import outline

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("public_read"),
]

EVENT_ID = re.compile(r'id="event-(\d+)"')


@database_sync_to_async
def add_event(
    task: str, status: str = "RUNNING", source: str = "api", client: str | None = None
) -> int:
    """A read (from a client of its own unless ``client`` says: reads of one client that
    return the same are folded into one row, which ``test_live_runs`` covers)."""
    body = {"client": client or uuid.uuid4().hex}
    return Event.objects.create(
        task_key=task, source=source, kind="read", status=status, body=body
    ).id


async def connect(
    path: str, have: list[int] | None = None, **hello: object
) -> WebsocketCommunicator:
    """A client that says hello with what it shows (``hello``: its other fields)."""
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    )
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "hello", "have": have or [], "tasks": [], **hello})
    return communicator


async def received_ids(
    communicator: WebsocketCommunicator, want: int, timeout: float = 5
) -> list[int]:
    """Event ids in the fragments received until ``want`` ids came (or the timeout)."""
    ids: list[int] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(ids) < want:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            html = await communicator.receive_from(timeout=remaining)
        except TimeoutError:
            break
        ids += [int(i) for i in EVENT_ID.findall(html)]
    return ids


async def test_a_task_subscriber_receives_only_its_task(hub):
    # Given a page of task A that already shows A's first event
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    first = await add_event(a, "PENDING")
    communicator = await connect(f"/ws/tasks/{a}", have=[first])

    # When events of A and B commit
    a_events = [await add_event(a), await add_event(a, "COMPLETED")]
    await add_event(b)

    # Then the page receives A's new events, each once, and nothing of B
    got = await received_ids(communicator, 2)
    assert got == a_events
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_the_first_hello_brings_what_the_page_lacks(hub):
    task = str(uuid.uuid4())
    ids = [await add_event(task) for _ in range(3)]
    communicator = await connect(f"/ws/tasks/{task}", have=ids[:1])
    assert sorted(await received_ids(communicator, 2)) == ids[1:]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_a_reconnect_with_its_last_seen_events_receives_exactly_the_missed_ones(hub):
    # Given a client that saw two events, then lost its connection
    task = str(uuid.uuid4())
    communicator = await connect(f"/ws/tasks/{task}")
    seen = [await add_event(task, "PENDING"), await add_event(task, "RUNNING")]
    assert await received_ids(communicator, 2) == seen
    await communicator.disconnect()

    # When events commit while it is away, and it reconnects saying what it has
    missed = [await add_event(task, "RUNNING"), await add_event(task, "COMPLETED")]
    communicator = await connect(f"/ws/tasks/{task}", have=seen)

    # Then it receives the missed ones, once each, and then live ones
    assert await received_ids(communicator, 2) == missed
    later = await add_event(task, "COMPLETED")
    assert await received_ids(communicator, 1) == [later]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_the_home_feed_moves_a_changed_task_to_the_top(hub):
    older = str(uuid.uuid4())
    await add_event(older, "PENDING", source="db")
    communicator = await connect("/ws/feed")
    catch_up = await communicator.receive_from(timeout=5)  # the recent tasks, again
    assert f'id="task-{older}"' in catch_up
    task = str(uuid.uuid4())
    await add_event(task, "RUNNING", source="db")
    html = await communicator.receive_from(timeout=5)
    assert f'id="task-{task}"' in html and older not in html
    assert 'hx-swap-oob="afterbegin:#task-rows"' in html
    assert "RUNNING" in html
    await communicator.disconnect()


async def test_a_live_read_that_repeats_the_last_one_extends_its_run(hub):
    # Given a page that shows one read of a client
    task = str(uuid.uuid4())
    first = await add_event(task, client="web")
    communicator = await connect(f"/ws/tasks/{task}", have=[first])

    # When the same read comes: the read's row gives way to a run of two
    second = await add_event(task, client="web")
    html = await communicator.receive_from(timeout=5)
    assert f'<li id="event-{first}" hx-swap-oob="delete">' in html
    assert f'id="run-{first}"' in html and 'data-count="2"' in html
    assert f'data-last-id="{second}"' in html

    # When a third comes: only the run's count and span change, no row is added
    third = await add_event(task, client="web")
    html = await communicator.receive_from(timeout=5)
    assert f'id="run-{first}-summary"' in html and 'data-count="3"' in html
    assert f"beforeend:#run-{first}-events" in html and f'id="event-{third}"' in html
    assert "beforeend:#timeline-events" not in html

    # And a read of another status is a row of its own
    other = await add_event(task, "COMPLETED", client="web")
    html = await communicator.receive_from(timeout=5)
    assert f'id="event-{other}"' in html and "beforeend:#timeline-events" in html
    await communicator.disconnect()


async def test_a_reconnect_does_not_send_the_reads_its_runs_hold_again(hub):
    # Given a page showing a run of three reads (first, count 3, last)
    task = str(uuid.uuid4())
    ids = [await add_event(task, client="web") for _ in range(3)]
    communicator = await connect(f"/ws/tasks/{task}", [ids[0]], runs=[[ids[0], 3, ids[2]]])
    # Then nothing is sent again (the catch-up carries the findings only), and the next
    # read extends the run to four
    assert EVENT_ID.findall(await communicator.receive_from(timeout=5)) == []
    fourth = await add_event(task, client="web")
    html = await communicator.receive_from(timeout=5)
    assert 'data-count="4"' in html and f'id="event-{fourth}"' in html
    await communicator.disconnect()


@database_sync_to_async
def long_history(task: str, n: int) -> int:
    Event.objects.bulk_create(
        Event(task_key=task, source="api", kind="read", status="RUNNING", body={"client": i})
        for i in range(n)
    )
    return Event.objects.filter(task_key=task).order_by("-id").values_list("id", flat=True)[0]


async def test_a_long_page_is_followed_from_where_it_ends(hub):
    # Given a long page that knows every event up to its newest (shown or in a window)
    task = str(uuid.uuid4())
    newest = await long_history(task, 2500)
    communicator = await connect(f"/ws/tasks/{task}", [newest], known_until=newest)
    # Then none of those is sent (the catch-up carries the findings only), and a new
    # event comes with a header that counts them all
    assert EVENT_ID.findall(await communicator.receive_from(timeout=5)) == []
    later = await add_event(task, "COMPLETED")
    html = await communicator.receive_from(timeout=5)
    assert EVENT_ID.findall(html) == [str(later)]
    assert "2501 events" in html
    await communicator.disconnect()


async def caught_up(communicator: WebsocketCommunicator) -> str:
    """Every message the catch-up sends (until the socket falls quiet), joined."""
    messages = [await communicator.receive_from(timeout=10)]
    while not await communicator.receive_nothing(timeout=0.5):
        messages.append(await communicator.receive_from(timeout=5))
    return "".join(messages)


@pytest.mark.parametrize(
    "hello",
    [{"have": []}, {"have": [], "known_until": 1}],
    ids=["have-nothing", "known-until-1"],
)
async def test_a_hello_on_a_long_history_brings_its_tail_only(hub, hello):
    # Given a task of 5,000 events, more than a long page's tail
    task = str(uuid.uuid4())
    await long_history(task, 5000)

    # When a client says hello claiming to have nothing (or to know nothing after id 1)
    communicator = await connect(f"/ws/tasks/{task}", **hello)
    html = await caught_up(communicator)

    # Then it receives a long page's tail at most, its newest events, and one window
    # for the rest, which it loads on demand as the page does
    sent = [int(i) for i in EVENT_ID.findall(html)]
    assert 0 < len(sent) <= outline.TAIL
    newest = await database_sync_to_async(
        lambda: list(
            Event.objects.filter(task_key=task).order_by("-id").values_list("id", flat=True)[:5]
        )
    )()
    assert set(newest) <= set(sent)
    assert html.count('data-testid="window"') == 1
    assert f"Show {5000 - len(sent):,} more events" in html
    assert len(html.encode()) < 400_000  # about 1 kB a row; the whole history was 4.5 MB
    assert "5000 events" in html  # the header counts them all

    # And it follows the task live from there
    later = await add_event(task, "COMPLETED")
    assert await received_ids(communicator, 1) == [later]
    await communicator.disconnect()


async def test_a_hello_with_ids_past_a_bigint_is_answered_not_failed(hub):
    task = str(uuid.uuid4())
    await long_history(task, 2500)
    huge = 2**70
    communicator = await connect(
        f"/ws/tasks/{task}", [huge], known_until=huge, runs=[[huge, 2, huge]]
    )
    html = await caught_up(communicator)
    assert 0 < len(EVENT_ID.findall(html)) <= outline.TAIL
    await communicator.disconnect()


async def test_the_window_a_catch_up_sends_holds_what_it_did_not(hub, client):
    # Given a hello on a long history that says nothing of it
    task = str(uuid.uuid4())
    await long_history(task, 2600)
    communicator = await connect(f"/ws/tasks/{task}")
    html = await caught_up(communicator)
    await communicator.disconnect()

    # When the client loads the window it received, and the windows that follows
    sent = {int(i) for i in EVENT_ID.findall(html)}
    url = re.search(r'data-url="([^"]+)"', html)
    assert url is not None
    loaded: set[int] = set()
    next_url: str | None = url.group(1).replace("&amp;", "&")
    while next_url:
        page = await database_sync_to_async(client.get)(next_url)
        assert page.status_code == 200
        body = page.content.decode()
        loaded |= {int(i) for i in EVENT_ID.findall(body)}
        more = re.search(r'data-url="([^"]+)"', body)
        next_url = more.group(1).replace("&amp;", "&") if more else None

    # Then the rows sent and the windows loaded are the whole history, each event once
    everything = await database_sync_to_async(
        lambda: set(Event.objects.filter(task_key=task).values_list("id", flat=True))
    )()
    assert not sent & loaded
    assert sent | loaded == everything


@database_sync_to_async
def viewer_session() -> bytes:
    """The cookie of a viewer's logged-in session."""
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    c = Client()
    assert c.login(username=name, password=accounts.add(name, "viewer"))
    return f"sessionid={c.cookies['sessionid'].value}".encode()


async def session_socket(cookie: bytes) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application,
        "/ws/feed",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)],
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def test_a_session_holds_at_most_its_cap_of_sockets(hub, settings):
    # Given a viewer's session and a cap of 3 sockets a session
    settings.LIFECYCLE_WS_PER_SESSION = 3
    cookie = await viewer_session()
    held = [await session_socket(cookie) for _ in range(3)]
    for communicator in held:
        assert await communicator.receive_nothing(timeout=0.2)  # open, not closed

    # When it opens one more
    extra = await session_socket(cookie)

    # Then that one is closed at once, with a code and a reason that say why
    closed = await extra.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == 4429
    assert "at most 3 per session" in closed["reason"]
    await extra.wait()

    # And another session is not held back, and a closed socket frees its place
    elsewhere = await session_socket(await viewer_session())
    assert await elsewhere.receive_nothing(timeout=0.3)
    await held.pop().disconnect()
    again = await session_socket(cookie)
    assert await again.receive_nothing(timeout=0.3)
    for communicator in [*held, elsewhere, again]:
        await communicator.disconnect()


async def test_many_home_pages_opened_at_once_share_their_catch_up(hub, monkeypatch, settings):
    # Given one task in the list, and a count of the catch-ups the process computes
    from dashboard import consumers

    settings.LIFECYCLE_WS_PER_SESSION = 100  # these sockets share an (unknown) address

    task = str(uuid.uuid4())
    await add_event(task, "PENDING", source="db")
    computed = []
    compute = consumers.recent_shared.compute

    def counted():
        computed.append(1)
        return compute()

    monkeypatch.setattr(consumers.recent_shared, "compute", counted)
    # When 60 home pages open at once
    sockets = await asyncio.gather(*(connect("/ws/feed") for _ in range(60)))
    catch_ups = await asyncio.gather(*(s.receive_from(timeout=20) for s in sockets))
    # Then each got the list, and the process computed it a few times, not 60
    assert all(f'id="task-{task}"' in html for html in catch_ups)
    assert len(computed) <= 3, len(computed)
    for s in sockets:
        await s.disconnect()


async def test_a_page_the_server_cancels_mid_catch_up_holds_nothing_afterwards(hub, monkeypatch):
    # Given a page of a task whose catch-up is slow (a long history, a busy database)
    from dashboard import consumers, sockets

    task = str(uuid.uuid4())
    await add_event(task)
    started = asyncio.Event()
    catch_up = consumers.TaskConsumer.catch_up

    async def slow(self, hello):
        started.set()
        await asyncio.sleep(30)
        await catch_up(self, hello)

    monkeypatch.setattr(consumers.TaskConsumer, "catch_up", slow)
    communicator = await connect(f"/ws/tasks/{task}")
    await asyncio.wait_for(started.wait(), 5)
    assert task in hub._topics
    # When the client leaves and the server cancels the consumer before its disconnect is
    # handled (daphne does so after its close timeout)
    communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await communicator.future
    # Then nothing holds it: no subscription, no place under the cap
    assert task not in hub._topics
    assert sockets.open_count("address unknown") == 0
