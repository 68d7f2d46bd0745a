"""The Dramatiq middleware reads a message's body fields once, at its start, on the worker's
thread, and hands them to the publisher as they are (``Publisher._note``); the start and the
ack share them, and the publisher's side makes their JSON. What reaches RabbitMQ must be what
``messages.encode`` makes of the same event, byte for byte, and the hooks must read the
message behind Dramatiq's ``MessageProxy`` as Dramatiq gave it."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import _RabbitmqMessage
from hypothesis import given
from hypothesis import strategies as st

from lifecycle.client import messages
from lifecycle.client.context import current_attempt, current_task
from lifecycle.client.dramatiq_middleware import LifecycleEvents, _fields
from lifecycle.client.publisher import Publisher, _encode

pytestmark = pytest.mark.unit

text = st.text(max_size=30)  # any code point: quotes, controls, U+2028, astral planes


class Emitted(Publisher):
    """The real publisher's encoding, with no thread: keeps what was buffered (``emit``'s,
    or the middleware's own note)."""

    def __init__(self) -> None:
        super().__init__(url="amqp://guest:guest@127.0.0.1:1/%2F", max_events=100)
        self.given: list[tuple[Any, ...]] = []

    def _append(self, message: Any) -> int | None:
        self.given.append(message)
        return len(self.given)

    def _note(self, message: Any) -> None:
        self.given.append(message)


def proxy(
    message_id: str, actor: str, queue: str, redelivered: bool | None, retries: int = 0
) -> Any:
    """A message as Dramatiq's RabbitMQ consumer hands it to the hooks."""
    inner = dramatiq.Message(
        queue_name=queue,
        actor_name=actor,
        args=(),
        kwargs={"task_id": "t-1"},
        options={"retries": retries},
        message_id=message_id,
    )
    if redelivered is None:
        return dramatiq.broker.MessageProxy(inner)
    return _RabbitmqMessage(redelivered, 1, inner)


def process(middleware: LifecycleEvents, message: Any) -> None:
    """A message through the hooks of one that succeeds: start, end, ack."""
    middleware.before_process_message(None, message)  # type: ignore[arg-type]
    middleware.after_process_message(None, message)  # type: ignore[arg-type]
    middleware.after_ack(None, message)  # type: ignore[arg-type]


@given(
    message_id=text,
    actor=text,
    queue=text,
    redelivered=st.none() | st.booleans(),
    retries=st.integers(min_value=0, max_value=10**6),
)
def test_the_bodys_json_is_json_dumps_of_the_body(
    message_id: str, actor: str, queue: str, redelivered: bool | None, retries: int
) -> None:
    message = proxy(message_id, actor, queue, redelivered, retries)
    fields = _fields(message._message, vars(message), retries + 1)
    body = messages.broker_body(fields)
    assert messages.broker_json(fields) == json.dumps(body, separators=(",", ":"))
    assert messages.is_broker_fields(fields)
    assert body["message_id"] == message_id and body["actor"] == actor
    assert body["attempt"] == retries + 1 and body["pid"] == os.getpid()
    assert body["thread"] == threading.current_thread().name
    assert body.get("redelivered") == redelivered


def test_start_and_ack_reach_the_wire_as_messages_encode_makes_them() -> None:
    # Given the middleware on the real publisher's emit (no thread, no broker)
    publisher = Emitted()
    middleware = LifecycleEvents(publisher=publisher)
    message = proxy("m-\u2028\"'", "act\u00e9", "jobs.DQ", True)
    # When a message starts and is acked
    process(middleware, message)
    # Then each event, as the publisher's thread encodes it, is make_message's, encoded
    start, ack = publisher.given
    assert start[6] is ack[6]  # one body's fields, read once, shared
    assert messages.is_broker_fields(start[6])  # as they are: plain data a relay is handed
    for parts, kind in ((start, "start"), (ack, "ack")):
        routing_key, raw, uuid = _encode(parts, {}, {})
        assert routing_key == f"broker.{kind}"
        sent = json.loads(raw)
        assert sent["uuid"] == uuid
        body = messages.broker_body(start[6])
        expected = messages.make_message(source="broker", kind=kind, task="t-1", body=body)
        expected.update(uuid=uuid, at=sent["at"])
        assert raw == messages.encode(expected)
        assert sent["body"] == {
            "message_id": "m-\u2028\"'",
            "actor": "act\u00e9",
            "queue": "jobs",  # the delay queue's own queue, as Dramatiq names it
            "attempt": 1,
            "pid": os.getpid(),
            "thread": threading.current_thread().name,
            "redelivered": True,
        }


def test_a_publisher_of_ones_own_gets_the_body_as_a_dict() -> None:
    class Own:
        def __init__(self) -> None:
            self.bodies: list[Any] = []

        def emit(self, source: str, kind: str, task: str, body: Any, **_: Any) -> None:
            self.bodies.append(body)

    own = Own()
    middleware = LifecycleEvents(publisher=own)  # type: ignore[arg-type]
    message = proxy("m-1", "work", "default", False)
    process(middleware, message)
    assert [type(b) for b in own.bodies] == [dict, dict]
    assert own.bodies[0]["message_id"] == "m-1"


def test_a_forked_child_names_its_own_pid_in_its_bodies() -> None:
    # Given a thread that already read a body's fields (its name is kept per thread)
    message = proxy("m-1", "work", "default", False)
    parent = _fields(message._message, vars(message), 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the same thread, another process
        try:
            child = _fields(message._message, vars(message), 1)
            os.write(write, messages.broker_json(child).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_body = json.loads(pipe.read())
    os.waitpid(pid, 0)
    # Then the child's body names the child
    assert messages.broker_body(parent)["pid"] == os.getpid()
    assert child_body["pid"] == pid


def test_a_publisher_subclass_with_its_own_emit_still_gets_the_body_and_its_json() -> None:
    class Recording(Publisher):
        def __init__(self) -> None:
            super().__init__(url="amqp://guest:guest@127.0.0.1:1/%2F", max_events=100)
            self.given: list[Any] = []

        def emit(self, source: str, kind: str, task: str, body: Any, **_: Any) -> None:
            self.given.append((kind, body))

    publisher = Recording()
    middleware = LifecycleEvents(publisher=publisher)
    message = proxy("m-1", "work", "default", False)
    process(middleware, message)
    assert [kind for kind, _ in publisher.given] == ["start", "ack"]
    for _, (body, text) in publisher.given:
        assert body["message_id"] == "m-1" and json.loads(text) == body


def test_a_message_of_its_own_making_never_makes_a_hook_raise_nor_leaves_its_task_set() -> None:
    # Given a message object with __slots__ whose attribute lookup raises KeyError (a proxy
    # of an application's own), on the real publisher's encoding
    class Slotted:
        __slots__ = ("_fields",)

        def __init__(self, **fields: Any) -> None:
            object.__setattr__(self, "_fields", fields)

        def __getattr__(self, name: str) -> Any:
            return self._fields[name]  # KeyError for "__dict__"

    publisher = Emitted()
    middleware = LifecycleEvents(publisher=publisher)
    message = Slotted(
        message_id="m-1", actor_name="a", queue_name="q", options={}, args=(), kwargs={}
    )
    # When it goes through every hook of a message, as another task's work had set the
    # thread's task and attempt
    current_task.set("task-A")
    current_attempt.set(("m-A", 1))
    process(middleware, message)
    middleware.after_process_message(None, message, exception=ValueError("x"))  # type: ignore[arg-type]
    # Then nothing raised, the failures were counted, and the thread works for no task
    assert middleware.errors >= 2
    assert current_task.get() is None and current_attempt.get() is None


@given(
    task_id=st.none() | st.integers() | text,
    args=st.lists(st.none() | st.integers() | text, max_size=2),
    prefix=st.sampled_from(["", "shop:"]),
)
def test_the_start_names_the_task_as_default_task_key_and_the_prefix_do(
    task_id: Any, args: list[Any], prefix: str
) -> None:
    # Given a message with or without a task_id kwarg and positional arguments, and a prefix
    from lifecycle.client import config

    config._key_prefix = prefix
    try:
        started(task_id, args, prefix)
    finally:
        config.forget()


def started(task_id: Any, args: list[Any], prefix: str) -> None:
    from lifecycle.client import config
    from lifecycle.client.dramatiq_middleware import default_task_key

    inner: Any = dramatiq.Message(
        queue_name="q",
        actor_name="a",
        args=tuple(args),
        kwargs={} if task_id is None else {"task_id": task_id},
        options={},
        message_id="m-9",
    )
    message = dramatiq.broker.MessageProxy(inner)
    publisher = Emitted()
    middleware = LifecycleEvents(publisher=publisher)
    # When it starts
    middleware.before_process_message(None, message)  # type: ignore[arg-type]
    # Then its event names the task as the key function and the prefix always did, and the
    # thread works for the application's own key
    expected = default_task_key(inner)
    assert publisher.given[0][2] == config.task_key(expected) == prefix + expected
    assert current_task.get() == expected
    assert current_attempt.get() == ("m-9", 1)
    middleware.after_process_message(None, message)  # type: ignore[arg-type]


def test_a_new_publisher_of_the_process_gets_the_next_messages_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the middleware on the process's publisher (none given), which handed it events
    from lifecycle.client import publisher as publishers

    first, second = Emitted(), Emitted()
    monkeypatch.setattr(publishers, "_publisher", first)
    middleware = LifecycleEvents()
    process(middleware, proxy("m-1", "work", "default", False))
    # When the process's publisher is replaced (a test's reset, a fork's own)
    monkeypatch.setattr(publishers, "_publisher", second)
    process(middleware, proxy("m-2", "work", "default", False))
    # Then each message's start and ack went to the publisher of its time, none to the other
    assert [(e[1], e[6][1]) for e in first.given] == [("start", "m-1"), ("ack", "m-1")]
    assert [(e[1], e[6][1]) for e in second.given] == [("start", "m-2"), ("ack", "m-2")]


@pytest.mark.parametrize("given", [42, None, "k-7"])
def test_a_key_function_s_own_value_is_the_thread_s_task_and_its_str_the_event_s(
    given: Any,
) -> None:
    # Given the application's own key function, which returns an int, None or a str
    publisher = Emitted()
    middleware = LifecycleEvents(publisher=publisher, task_key=lambda message: given)
    message = proxy("m-1", "work", "default", False)
    # When a message starts
    middleware.before_process_message(None, message)  # type: ignore[arg-type]
    # Then the thread works for the key as the function gave it (None: for no task, so its
    # warnings are not published), and the event names it as text
    assert current_task.get() == given
    assert publisher.given[0][2] == str(given)
    middleware.after_process_message(None, message)  # type: ignore[arg-type]


def test_a_subclass_s_own_key_names_the_start_and_the_ack() -> None:
    # Given a subclass of the middleware with a _key of its own
    class Keyed(LifecycleEvents):
        def _key(self, inner: Any, message: Any) -> str:
            return "mine"

    publisher = Emitted()
    # When a message goes through its hooks
    process(Keyed(publisher=publisher), proxy("m-1", "work", "default", False))
    # Then its start and ack are the subclass's task's
    assert [(e[1], e[2]) for e in publisher.given] == [("start", "mine"), ("ack", "mine")]
