from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.errors import BindingError, EventDispatchError, RequestHandlerDoesNotExist
from anycqrs.requests.bootstrap import bootstrap

pytestmark = pytest.mark.anyio


@attrs.frozen
class UserCreated(anycqrs.Response):
    user_id: int


@attrs.frozen
class CreateUser(anycqrs.Request[UserCreated]):
    name: str


@attrs.frozen
class Registered(anycqrs.DomainEvent):
    user_id: int


@attrs.frozen
class Welcomed(anycqrs.DomainEvent):
    user_id: int


@attrs.frozen
class UserPaid:
    user_id: int


class Journal:
    """A shared log (a lagom singleton in these tests)."""

    def __init__(self) -> None:
        self.entries: list[str] = []


class Users:
    def __init__(self) -> None:
        self.next_id = 1


class CreateUserHandler(anycqrs.RequestHandler[CreateUser, UserCreated]):
    def __init__(self, journal: Journal, users: Users) -> None:
        self.journal = journal
        self.users = users

    async def handle(self, request: CreateUser) -> UserCreated:
        self.journal.entries.append(f"handle {request.name}")
        user_id = self.users.next_id
        self.users.next_id += 1
        self.emit(Registered(user_id))
        self.emit(anycqrs.NotificationEvent(payload=UserPaid(user_id), topic="users", key="k"))
        return UserCreated(user_id)


class OnRegistered(anycqrs.EventHandler[Registered]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: Registered) -> None:
        self.journal.entries.append(f"registered {event.user_id}")
        self.emit(Welcomed(event.user_id))


class OnWelcomed(anycqrs.EventHandler[Welcomed]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: Welcomed) -> None:
        self.journal.entries.append(f"welcomed {event.user_id}")


class OnUserPaid(anycqrs.EventHandler[anycqrs.NotificationEvent[UserPaid]]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: anycqrs.NotificationEvent[UserPaid]) -> None:
        self.journal.entries.append(f"paid {event.payload.user_id}")


class Recorder:
    def __init__(self, journal: Journal, name: str) -> None:
        self.journal = journal
        self.name = name

    async def __call__(self, message: Any, call_next: anycqrs.middlewares.CallNext) -> Any:
        self.journal.entries.append(f"{self.name} in {type(message).__name__}")
        result = await call_next(message)
        self.journal.entries.append(f"{self.name} out {type(result).__name__}")
        return result


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def container(journal: Journal) -> lagom.Container:
    c = lagom.Container()
    c[Journal] = journal
    c[Users] = Users()
    return c


def bind_events(events: anycqrs.EventMap) -> None:
    events.bind(Registered, OnRegistered)
    events.bind(Welcomed, OnWelcomed)
    events.bind(anycqrs.NotificationEvent[UserPaid], OnUserPaid)


async def test_send_runs_middlewares_handler_events_in_order(
    container: lagom.Container, journal: Journal
) -> None:
    broker = InMemoryMessageBroker()
    mediator = bootstrap(
        di_container=container,
        message_broker=broker,
        commands_mapper=lambda m: m.bind(CreateUser, CreateUserHandler),
        domain_events_mapper=bind_events,
        middlewares=[Recorder(journal, "outer"), Recorder(journal, "inner")],
    )
    result = await mediator.send(CreateUser("ada"))
    assert result == UserCreated(1)
    assert journal.entries == [
        "outer in CreateUser",
        "inner in CreateUser",
        "handle ada",
        "registered 1",
        "paid 1",
        "welcomed 1",  # follow-ups come after the whole first generation
        "inner out UserCreated",
        "outer out UserCreated",
    ]
    (message,) = broker.messages
    assert message.message_name == "UserPaid"
    assert message.topic == "users"
    assert message.key == "k"
    assert message.payload["payload"] == {"user_id": 1}


async def test_handlers_are_resolved_per_dispatch(container: lagom.Container) -> None:
    seen: list[int] = []

    class Counting(anycqrs.RequestHandler[CreateUser, UserCreated]):
        async def handle(self, request: CreateUser) -> UserCreated:
            seen.append(id(self))
            return UserCreated(len(seen))

    mediator = bootstrap(
        di_container=container, queries_mapper=lambda m: m.bind(CreateUser, Counting)
    )
    first = await mediator.send(CreateUser("a"))
    second = await mediator.send(CreateUser("b"))
    assert (first.user_id, second.user_id) == (1, 2)
    assert len(seen) == 2


async def test_singleton_handler_events_do_not_leak_between_sends(
    container: lagom.Container, journal: Journal
) -> None:
    handler = CreateUserHandler(journal, Users())
    container[CreateUserHandler] = handler
    mediator = bootstrap(
        di_container=container,
        commands_mapper=lambda m: m.bind(CreateUser, CreateUserHandler),
        domain_events_mapper=bind_events,
    )
    await mediator.send(CreateUser("a"))
    await mediator.send(CreateUser("b"))
    assert journal.entries.count("registered 1") == 1
    assert journal.entries.count("registered 2") == 1
    assert handler.events == []


async def test_no_handler(container: lagom.Container) -> None:
    mediator = bootstrap(di_container=container)
    with pytest.raises(RequestHandlerDoesNotExist, match="No handler bound for CreateUser"):
        await mediator.send(CreateUser("x"))


def test_binding_twice_raises() -> None:
    requests = anycqrs.RequestMap()
    requests.bind(CreateUser, CreateUserHandler)
    with pytest.raises(BindingError, match="already bound"):
        requests.bind(CreateUser, CreateUserHandler)


def test_commands_and_queries_share_one_namespace() -> None:
    with pytest.raises(BindingError, match="already bound"):
        bootstrap(
            commands_mapper=lambda m: m.bind(CreateUser, CreateUserHandler),
            queries_mapper=lambda m: m.bind(CreateUser, CreateUserHandler),
        )


def test_bind_rejects_mismatched_and_non_handlers() -> None:
    @attrs.frozen
    class Other(anycqrs.Request):
        pass

    requests = anycqrs.RequestMap()
    with pytest.raises(BindingError, match=r"handles CreateUser, not .*<locals>\.Other"):
        requests.bind(Other, CreateUserHandler)
    with pytest.raises(BindingError, match="not a request handler"):
        requests.bind(Other, object())
    with pytest.raises(BindingError, match="not a request class"):
        requests.bind("Other", CreateUserHandler)  # type: ignore[arg-type]


class Boom(Exception):
    pass


async def test_handler_error_is_unchanged_and_events_are_dropped(
    container: lagom.Container, journal: Journal
) -> None:
    class Failing(anycqrs.RequestHandler[CreateUser, UserCreated]):
        async def handle(self, request: CreateUser) -> UserCreated:
            self.emit(Registered(1))
            raise Boom("nope")

    broker = InMemoryMessageBroker()
    mediator = bootstrap(
        di_container=container,
        message_broker=broker,
        commands_mapper=lambda m: m.bind(CreateUser, Failing),
        domain_events_mapper=bind_events,
    )
    with pytest.raises(Boom, match="nope"):
        await mediator.send(CreateUser("x"))
    assert journal.entries == []
    assert broker.messages == []


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
async def test_event_failure_keeps_the_response(
    container: lagom.Container, journal: Journal, parallel: bool
) -> None:
    class FailingListener(anycqrs.EventHandler[Registered]):
        async def handle(self, event: Registered) -> None:
            raise Boom("listener")

    mediator = bootstrap(
        di_container=container,
        commands_mapper=lambda m: m.bind(CreateUser, CreateUserHandler),
        domain_events_mapper=lambda e: e.bind(Registered, FailingListener),
        concurrent_event_handle_enable=parallel,
    )
    with pytest.raises(EventDispatchError) as info:
        await mediator.send(CreateUser("x"))
    assert info.value.response == UserCreated(1)
    assert [type(e) for e in info.value.exceptions] == [Boom]
    assert "handler's result is in .response" in str(info.value)


async def test_broker_failure_keeps_the_response(container: lagom.Container) -> None:
    class DownBroker:
        async def send_message(self, message: Any) -> None:
            raise ConnectionError("broker down")

    mediator = bootstrap(
        di_container=container,
        message_broker=DownBroker(),
        commands_mapper=lambda m: m.bind(CreateUser, CreateUserHandler),
    )
    with pytest.raises(EventDispatchError) as info:
        await mediator.send(CreateUser("x"))
    assert info.value.response == UserCreated(1)
    assert isinstance(info.value.exceptions[0], ConnectionError)


async def test_python_cqrs_style_handler(container: lagom.Container, journal: Journal) -> None:
    class Legacy(anycqrs.RequestHandler[CreateUser, UserCreated]):
        def __init__(self) -> None:
            self.events = []

        async def handle(self, request: CreateUser) -> UserCreated:
            self.events.append(Registered(7))
            return UserCreated(7)

    mediator = bootstrap(
        di_container=container,
        commands_mapper=lambda m: m.bind(CreateUser, Legacy),
        domain_events_mapper=bind_events,
    )
    assert await mediator.send(CreateUser("x")) == UserCreated(7)
    assert journal.entries == ["registered 7", "welcomed 7"]


async def test_dataclass_requests(container: lagom.Container) -> None:
    @dataclasses.dataclass
    class Ping(anycqrs.Request[str]):
        text: str

    class PingHandler(anycqrs.RequestHandler[Ping, str]):
        async def handle(self, request: Ping) -> str:
            return request.text.upper()

    mediator = bootstrap(di_container=container, queries_mapper=lambda m: m.bind(Ping, PingHandler))
    assert await mediator.send(Ping("hi")) == "HI"


class Session:
    def __init__(self, name: str = "default") -> None:
        self.name = name


class WhoAmI(anycqrs.RequestHandler[CreateUser, UserCreated]):
    def __init__(self, session: Session) -> None:
        self.session = session

    async def handle(self, request: CreateUser) -> UserCreated:
        return UserCreated(len(self.session.name))


async def test_request_scoped_container(container: lagom.Container) -> None:
    container[Session] = Session("app")
    mediator = bootstrap(
        di_container=container, queries_mapper=lambda m: m.bind(CreateUser, WhoAmI)
    )
    scoped = container.clone()
    scoped[Session] = Session("request-42")
    assert (await mediator.with_container(scoped).send(CreateUser("x"))).user_id == 10
    assert (await mediator.send(CreateUser("x"))).user_id == 3


async def test_async_custom_container() -> None:
    class Handler(anycqrs.RequestHandler[CreateUser, UserCreated]):
        def __init__(self, offset: int) -> None:
            self.offset = offset

        async def handle(self, request: CreateUser) -> UserCreated:
            return UserCreated(self.offset)

    class MyContainer:
        def __init__(self) -> None:
            self.calls = 0

        async def resolve(self, type_: Any) -> Any:
            self.calls += 1
            await anyio.lowlevel.checkpoint()
            if type_ is Handler:
                return Handler(41)
            return type_()

    custom = MyContainer()
    mediator = bootstrap(
        di_container=custom,
        commands_mapper=lambda m: m.bind(CreateUser, Handler),
        domain_events_mapper=lambda e: e.bind(Registered, OnSilent),
    )
    assert await mediator.send(CreateUser("x")) == UserCreated(41)
    assert custom.calls == 1


class OnSilent(anycqrs.EventHandler[Registered]):
    async def handle(self, event: Registered) -> None:
        pass


async def test_caller_cancellation_propagates(container: lagom.Container) -> None:
    started = anyio.Event()
    finished: list[str] = []

    class Slow(anycqrs.RequestHandler[CreateUser, UserCreated]):
        async def handle(self, request: CreateUser) -> UserCreated:
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                finished.append("cleanup")
            raise AssertionError("unreachable")

    mediator = bootstrap(di_container=container, commands_mapper=lambda m: m.bind(CreateUser, Slow))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(mediator.send, CreateUser("x"))
            await started.wait()
            group.cancel_scope.cancel()
    assert finished == ["cleanup"]


async def test_timeout_around_send(container: lagom.Container) -> None:
    class Slow(anycqrs.RequestHandler[CreateUser, UserCreated]):
        async def handle(self, request: CreateUser) -> UserCreated:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    mediator = bootstrap(di_container=container, commands_mapper=lambda m: m.bind(CreateUser, Slow))
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await mediator.send(CreateUser("x"))


async def test_parallel_events_run_concurrently_and_bounded(container: lagom.Container) -> None:
    running = 0
    peak = 0
    gate = anyio.Event()

    class Listener(anycqrs.EventHandler[Registered]):
        async def handle(self, event: Registered) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if peak >= 3:
                gate.set()
            with anyio.fail_after(5):
                await gate.wait()
            running -= 1

    class Fanout(anycqrs.RequestHandler[CreateUser, UserCreated]):
        async def handle(self, request: CreateUser) -> UserCreated:
            self.emit(*(Registered(i) for i in range(8)))
            return UserCreated(0)

    mediator = bootstrap(
        di_container=container,
        commands_mapper=lambda m: m.bind(CreateUser, Fanout),
        domain_events_mapper=lambda e: e.bind(Registered, Listener),
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=3,
    )
    await mediator.send(CreateUser("x"))
    assert peak == 3
    assert running == 0
