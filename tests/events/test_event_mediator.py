from __future__ import annotations

from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.errors import BindingError, EventDispatchError, UnknownEventName
from anycqrs.events.bootstrap import bootstrap

pytestmark = pytest.mark.anyio


@attrs.frozen
class Node(anycqrs.DomainEvent):
    name: str
    children: tuple[str, ...] = ()


@attrs.frozen
class Shipped:
    order_id: int


@attrs.frozen
class Renamed:
    __event_name__ = "orders.renamed"
    order_id: int


class Log:
    def __init__(self) -> None:
        self.entries: list[str] = []


TREE = {
    "root": ("a", "b"),
    "a": ("a1", "a2"),
    "b": ("b1",),
}


class Expand(anycqrs.EventHandler[Node]):
    def __init__(self, log: Log) -> None:
        self.log = log

    async def handle(self, event: Node) -> None:
        self.log.entries.append(f"expand {event.name}")
        for child in TREE.get(event.name, ()):
            self.emit(Node(child))


class Audit(anycqrs.EventHandler[Node]):
    def __init__(self, log: Log) -> None:
        self.log = log

    async def handle(self, event: Node) -> None:
        self.log.entries.append(f"audit {event.name}")


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def container(log: Log) -> lagom.Container:
    c = lagom.Container()
    c[Log] = log
    return c


async def test_sequential_is_breadth_first_in_bind_order(
    container: lagom.Container, log: Log
) -> None:
    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Node, Expand)
        events.bind(Node, Audit)

    mediator = bootstrap(di_container=container, events_mapper=bind)
    await mediator.send(Node("root"))
    assert log.entries == [
        "expand root",
        "audit root",
        "expand a",
        "audit a",
        "expand b",
        "audit b",
        "expand a1",
        "audit a1",
        "expand a2",
        "audit a2",
        "expand b1",
        "audit b1",
    ]


async def test_parallel_runs_every_handler(container: lagom.Container, log: Log) -> None:
    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Node, Expand)
        events.bind(Node, Audit)

    mediator = bootstrap(
        di_container=container, events_mapper=bind, concurrent_event_handle_enable=True
    )
    await mediator.send(Node("root"))
    assert sorted(log.entries) == sorted(
        f"{verb} {name}"
        for verb in ("expand", "audit")
        for name in ("root", "a", "b", "a1", "a2", "b1")
    )


def test_duplicate_handler_rejected() -> None:
    events = anycqrs.EventMap()
    events.bind(Node, Audit)
    with pytest.raises(BindingError, match="Audit is already bound to Node"):
        events.bind(Node, Audit)


def test_bind_validation() -> None:
    events = anycqrs.EventMap()
    with pytest.raises(BindingError, match="not an event type"):
        events.bind(int, Audit)
    with pytest.raises(BindingError, match="not an event handler"):
        events.bind(Node, object())
    with pytest.raises(BindingError, match="handles Node"):
        events.bind(anycqrs.NotificationEvent[Shipped], Audit)


def test_event_names_must_be_unique() -> None:
    @attrs.frozen
    class Other:
        __event_name__ = "Shipped"

    class H(anycqrs.EventHandler[anycqrs.NotificationEvent[Any]]):
        async def handle(self, event: Any) -> None:
            pass

    events = anycqrs.EventMap()
    events.bind(anycqrs.NotificationEvent[Shipped], H)
    with pytest.raises(BindingError, match="share the event name 'Shipped'"):
        events.bind(anycqrs.NotificationEvent[Other], H)


def test_notification_routing_by_name() -> None:
    class H(anycqrs.EventHandler[anycqrs.NotificationEvent[Renamed]]):
        async def handle(self, event: anycqrs.NotificationEvent[Renamed]) -> None:
            pass

    events = anycqrs.EventMap()
    events.bind(anycqrs.NotificationEvent[Renamed], H)
    assert events.notification_type("orders.renamed") == anycqrs.NotificationEvent[Renamed]
    assert events.event_names == frozenset({"orders.renamed"})
    assert anycqrs.NotificationEvent[Renamed] in events
    assert events.handlers(anycqrs.NotificationEvent[Renamed]) == (H,)
    with pytest.raises(UnknownEventName, match="'nope'"):
        events.notification_type("nope")
    assert "NotificationEvent[Renamed]: [" in repr(events)


async def test_notifications_from_outside_are_not_republished(container: lagom.Container) -> None:
    seen: list[int] = []

    class OnShipped(anycqrs.EventHandler[anycqrs.NotificationEvent[Shipped]]):
        async def handle(self, event: anycqrs.NotificationEvent[Shipped]) -> None:
            seen.append(event.payload.order_id)
            self.emit(anycqrs.NotificationEvent(payload=Renamed(event.payload.order_id), topic="t"))

    broker = InMemoryMessageBroker()
    mediator = bootstrap(
        di_container=container,
        message_broker=broker,
        events_mapper=lambda e: e.bind(anycqrs.NotificationEvent[Shipped], OnShipped),
    )
    await mediator.send(anycqrs.NotificationEvent(payload=Shipped(5), topic="orders"))
    assert seen == [5]
    assert [m.message_name for m in broker.messages] == ["orders.renamed"]


class Boom(Exception):
    pass


async def test_sequential_failure_is_unchanged(container: lagom.Container, log: Log) -> None:
    class Failing(anycqrs.EventHandler[Node]):
        async def handle(self, event: Node) -> None:
            raise Boom(event.name)

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Node, Failing)
        events.bind(Node, Audit)

    mediator = bootstrap(di_container=container, events_mapper=bind)
    with pytest.raises(Boom, match="root"):
        await mediator.send(Node("root"))
    assert log.entries == []  # stops at the first failure


async def test_parallel_failure_cancels_siblings(container: lagom.Container) -> None:
    sibling_started = anyio.Event()
    cancelled: list[str] = []

    class Sleeper(anycqrs.EventHandler[Node]):
        async def handle(self, event: Node) -> None:
            sibling_started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(event.name)
                raise

    class Failing(anycqrs.EventHandler[Node]):
        async def handle(self, event: Node) -> None:
            await sibling_started.wait()
            raise Boom("fail")

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Node, Sleeper)
        events.bind(Node, Failing)

    mediator = bootstrap(
        di_container=container, events_mapper=bind, concurrent_event_handle_enable=True
    )
    with anyio.fail_after(5), pytest.raises(Boom, match="fail"):
        await mediator.send(Node("x"))
    assert cancelled == ["x"]


async def test_parallel_failures_together(container: lagom.Container) -> None:
    both = anyio.Event()
    arrived = 0

    class FailA(anycqrs.EventHandler[Node]):
        async def handle(self, event: Node) -> None:
            nonlocal arrived
            arrived += 1
            if arrived == 2:
                both.set()
            raise Boom("a")

    class FailB(anycqrs.EventHandler[Node]):
        async def handle(self, event: Node) -> None:
            nonlocal arrived
            arrived += 1
            if arrived == 2:
                both.set()
            raise Boom("b")

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Node, FailA)
        events.bind(Node, FailB)

    mediator = bootstrap(
        di_container=container, events_mapper=bind, concurrent_event_handle_enable=True
    )
    with pytest.raises(EventDispatchError) as info:
        await mediator.send(Node("x"))
    assert sorted(str(e) for e in info.value.exceptions) == ["a", "b"]
    assert info.value.response is None


async def test_nothing_outlives_send(container: lagom.Container, log: Log) -> None:
    class Slowish(anycqrs.EventHandler[Node]):
        def __init__(self, log: Log) -> None:
            self.log = log

        async def handle(self, event: Node) -> None:
            await anyio.sleep(0.01)
            self.log.entries.append(event.name)

    mediator = bootstrap(
        di_container=container,
        events_mapper=lambda e: e.bind(Node, Slowish),
        concurrent_event_handle_enable=True,
    )
    await mediator.send_many([Node("a"), Node("b"), Node("c")])
    assert sorted(log.entries) == ["a", "b", "c"]  # all done when send returned


async def test_cancelling_the_caller_cancels_parallel_handlers(container: lagom.Container) -> None:
    started = anyio.Event()
    cleaned: list[str] = []

    class Forever(anycqrs.EventHandler[Node]):
        async def handle(self, event: Node) -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                cleaned.append(event.name)

    mediator = bootstrap(
        di_container=container,
        events_mapper=lambda e: e.bind(Node, Forever),
        concurrent_event_handle_enable=True,
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(mediator.send, Node("x"))
            await started.wait()
            group.cancel_scope.cancel()
    assert cleaned == ["x"]


async def test_middlewares_wrap_each_handler_call(container: lagom.Container, log: Log) -> None:
    class Tag:
        async def __call__(self, message: Any, call_next: Any) -> Any:
            log.entries.append(f"mw {message.name}")
            return await call_next(message)

    mediator = bootstrap(
        di_container=container,
        events_mapper=lambda e: (e.bind(Node, Expand), e.bind(Node, Audit)),
        middlewares=[Tag()],
    )
    await mediator.send(Node("b"))
    assert log.entries == [
        "mw b",
        "expand b",
        "mw b",
        "audit b",
        "mw b1",
        "expand b1",
        "mw b1",
        "audit b1",
    ]


async def test_unbound_event_is_a_no_op(container: lagom.Container) -> None:
    mediator = bootstrap(di_container=container)
    await mediator.send(Node("nobody listens"))
    assert len(mediator.event_map) == 0


def test_invalid_concurrency_bound() -> None:
    with pytest.raises(ValueError, match="max_concurrent_event_handlers"):
        bootstrap(max_concurrent_event_handlers=0)


class OwnEvents:
    """A duck-typed handler with its own `events` list (not the fast path)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.events: list[Any] = []

    async def handle(self, event: Node) -> None:
        self.log.entries.append(f"own {event.name}")
        self.events.extend(Node(child) for child in TREE.get(event.name, ()))


class AsyncOnly:
    """A container without the `FactoryContainer` capability."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def resolve(self, type_: type) -> Any:
        return type_(self.log)


@pytest.mark.parametrize("concurrent", [False, True])
@pytest.mark.parametrize("handler", [Expand, OwnEvents])
async def test_every_handler_shape_and_container_takes_follow_ups_once(
    log: Log, handler: type, concurrent: bool
) -> None:
    for container in (AsyncOnly(log), lagom.Container()):
        if isinstance(container, lagom.Container):
            container[Log] = log
        log.entries.clear()
        mediator = bootstrap(
            di_container=container,
            events_mapper=lambda e: e.bind(Node, handler),
            concurrent_event_handle_enable=concurrent,
        )
        await mediator.send(Node("root"))
        await mediator.send(Node("b"))
        prefix = "expand" if handler is Expand else "own"
        names = sorted(entry.split()[1] for entry in log.entries)
        assert names == sorted(["root", "a", "b", "a1", "a2", "b1", "b", "b1"])
        assert all(entry.startswith(prefix) for entry in log.entries)


@pytest.mark.parametrize("bound", [2, 10])
async def test_parallel_handlers_that_wait_run_side_by_side(
    container: lagom.Container, bound: int
) -> None:
    """Handlers that wait run at the same time (up to the bound), follow-ups too:
    each of a generation waits until its whole generation (or the bound) arrived."""
    arrived: dict[str, int] = {}
    running = [0, 0]  # now, most at once
    gates: dict[str, anyio.Event] = {}
    size = {"root": 3, "child": 6}  # handlers per event name: 3 on root, 3 x 2 children

    def handler(index: int) -> Any:
        class Waits(anycqrs.EventHandler[Node]):
            async def handle(self, event: Node) -> None:
                kind = "root" if event.name == "root" else "child"
                running[0] += 1
                running[1] = max(running)
                arrived[kind] = arrived.get(kind, 0) + 1
                gate = gates.setdefault(kind, anyio.Event())
                if arrived[kind] >= min(size[kind], bound):
                    gate.set()
                await gate.wait()
                await anyio.sleep(0)
                running[0] -= 1
                if kind == "root" and index == 0:
                    self.emit(Node("c1"))
                    self.emit(Node("c2"))

        Waits.__name__ = Waits.__qualname__ = f"Waits{index}"
        return Waits

    def bind(events: anycqrs.EventMap) -> None:
        for index in range(3):
            events.bind(Node, handler(index))

    mediator = bootstrap(
        di_container=container,
        events_mapper=bind,
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=bound,
    )
    with anyio.fail_after(5):
        await mediator.send(Node("root"))
    assert arrived == {"root": 3, "child": 6}
    assert running[1] == min(bound, 6)
    assert running[0] == 0
