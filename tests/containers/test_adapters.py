"""The adapters: detection by type, explicit wrapping, what each builds, and
the scope rules every container shares (order, nesting, failing finalizers,
consumed messages)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs._endpoint import Endpoints
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.container import (
    DependencyInjectorContainer,
    DiContainer,
    DishkaContainer,
    LagomContainer,
    ScopedContainer,
    ScopedLagomContainer,
    as_container,
)
from anycqrs.events import bootstrap as events_bootstrap
from anycqrs.requests import bootstrap as requests_bootstrap

from .conftest import Journal, Repo, Session, build

pytestmark = pytest.mark.anyio


class Handler:
    def __init__(self, repo: Repo, session: Session) -> None:
        self.repo = repo
        self.session = session


ADAPTER = {
    "lagom": ScopedLagomContainer,
    "dishka": DishkaContainer,
    "di": DiContainer,
    "dependency_injector": DependencyInjectorContainer,
}


class TestDetection:
    """What `di_container=` accepts, and what it becomes."""

    def test_each_library_container_is_wrapped_in_its_adapter(
        self, kind: str, journal: Journal
    ) -> None:
        container = as_container(build(kind, [Handler], journal))
        assert type(container) is ADAPTER[kind]
        assert isinstance(container, ScopedContainer)

    def test_an_adapter_passes_through(self, kind: str, journal: Journal) -> None:
        adapter = as_container(build(kind, [Handler], journal))
        assert as_container(adapter) is adapter

    def test_lagom_stays_unscoped_and_fast(self) -> None:
        container = as_container(lagom.Container())
        assert isinstance(container, LagomContainer)
        assert not isinstance(container, ScopedContainer)
        endpoints = Endpoints(container)
        assert endpoints.scope is None
        assert endpoints.get(InnerHandler).fast is not None

    def test_a_scoped_container_has_no_fast_path(self, journal: Journal) -> None:
        endpoints = Endpoints(as_container(build("lagom", [Handler], journal)))
        assert endpoints.scope is not None
        assert endpoints.get(Handler).fast is None

    def test_an_unknown_object_is_refused_with_a_hint(self) -> None:
        with pytest.raises(TypeError, match="dishka"):
            as_container(object())

    def test_detection_imports_no_library(self) -> None:
        script = (
            "import sys, lagom, anycqrs.container as c\n"
            "c.as_container(None); c.as_container(lagom.Container())\n"
            "print(sorted({'dishka', 'di', 'dependency_injector'} & set(sys.modules)))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "[]"


class TestBuilding:
    """Each adapter builds a handler with its dependencies, in and out of scopes."""

    async def test_resolved_in_a_scope_shares_the_scoped_value(
        self, kind: str, journal: Journal
    ) -> None:
        container = as_container(build(kind, [Handler], journal))
        assert isinstance(container, ScopedContainer)
        async with container.scope() as resolver:
            first = await resolver.resolve(Handler)
            second = await resolver.resolve(Handler)
        assert first is not second  # handlers are built per resolve
        assert first.session is second.session is first.repo.session
        async with container.scope() as resolver:
            third = await resolver.resolve(Handler)
        assert third.session is not first.session

    def test_dependency_injector_resolves_an_abstract_type_to_its_one_subclass(self) -> None:
        from dependency_injector import containers, providers

        class Base:
            pass

        class Impl(Base):
            pass

        container = containers.DynamicContainer()
        container.impl = providers.Factory(Impl)
        adapter = DependencyInjectorContainer(container)
        assert isinstance(adapter.provider(Base)(), Impl)
        with pytest.raises(LookupError, match=r"no provider .* builds Repo"):
            adapter.provider(Repo)

    async def test_a_lagom_scoped_type_exists_only_in_a_scope(self, journal: Journal) -> None:
        container = build("lagom", [Handler], journal)
        with pytest.raises(LookupError, match="Session is scoped"):
            await container.resolve(Handler)
        async with container.scope() as resolver:
            assert isinstance(await resolver.resolve(Handler), Handler)

    async def test_dishka_without_a_child_scope(self) -> None:
        from dishka import Provider, Scope, make_async_container

        provider = Provider(scope=Scope.APP)
        provider.provide(Session, provides=Session)
        provider.provide(lambda: Session(7), provides=Session, override=True)
        container = make_async_container(provider, lock_factory=anyio.Lock)
        adapter = DishkaContainer(container, scope=None)
        async with adapter.scope() as resolver:
            assert (await resolver.resolve(Session)).number == 7
        await container.close()


@attrs.frozen
class Outer(anycqrs.Request):
    pass


@attrs.frozen
class Inner(anycqrs.Request):
    pass


class InnerHandler(anycqrs.RequestHandler[Inner, int]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: Inner) -> int:
        return self.session.number


class OuterHandler(anycqrs.RequestHandler[Outer, tuple[int, int]]):
    mediator: anycqrs.RequestMediator

    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: Outer) -> tuple[int, int]:
        inner = await OuterHandler.mediator.send(Inner())
        return self.session.number, inner


class TestScopeRules:
    """Nesting, finalizer order and failing finalizers."""

    async def test_a_send_from_inside_a_handler_joins_its_scope(
        self, kind: str, journal: Journal
    ) -> None:
        def commands(requests: anycqrs.RequestMap) -> None:
            requests.bind(Outer, OuterHandler)
            requests.bind(Inner, InnerHandler)

        mediator = requests_bootstrap.bootstrap(
            di_container=build(kind, [OuterHandler, InnerHandler], journal),
            commands_mapper=commands,
        )
        OuterHandler.mediator = mediator
        with anyio.fail_after(10):
            assert await mediator.send(Outer()) == (1, 1)
        assert len(journal.finals()) == 1

    async def test_finalizers_run_newest_first_and_learn_the_outcome(self) -> None:
        order: list[str] = []

        class Connection:
            pass

        def resource(name: str) -> Any:
            @contextlib.asynccontextmanager
            async def manage() -> AsyncIterator[object]:
                order.append(f"open {name}")
                try:
                    yield object()
                except BaseException as error:
                    order.append(f"rollback {name}: {type(error).__name__}")
                    raise
                order.append(f"commit {name}")

            return manage

        container = ScopedLagomContainer(
            scoped={Connection: resource("connection"), Session: resource("session")}
        )
        async with container.scope():
            pass
        with pytest.raises(KeyError):
            async with container.scope():
                raise KeyError("x")
        assert order == [
            "open connection",
            "open session",
            "commit session",
            "commit connection",
            "open connection",
            "open session",
            "rollback session: KeyError",
            "rollback connection: KeyError",
        ]

    async def test_dishka_finalizers_run_newest_first(self) -> None:
        from dishka import Provider, Scope, make_async_container

        order: list[str] = []
        provider = Provider(scope=Scope.REQUEST)

        async def session() -> AsyncIterator[Session]:
            error = yield Session(1)
            order.append(f"session {type(error).__name__}")

        async def repo(session: Session) -> AsyncIterator[Repo]:
            error = yield Repo(session)
            order.append(f"repo {type(error).__name__}")

        provider.provide(session)
        provider.provide(repo)
        container = DishkaContainer(make_async_container(provider, lock_factory=anyio.Lock))
        with pytest.raises(KeyError):
            async with container.scope() as resolver:
                await resolver.resolve(Repo)
                raise KeyError("x")
        assert order == ["repo KeyError", "session KeyError"]

    async def test_a_finalizer_failing_on_success_fails_the_send(self) -> None:
        @contextlib.asynccontextmanager
        async def session() -> AsyncIterator[Session]:
            yield Session(1)
            raise RuntimeError("commit failed")

        mediator = requests_bootstrap.bootstrap(
            di_container=ScopedLagomContainer(scoped={Session: session}),
            commands_mapper=lambda requests: requests.bind(Inner, InnerHandler),
        )
        with anyio.fail_after(10), pytest.raises(RuntimeError, match="commit failed"):
            await mediator.send(Inner())


@attrs.frozen
class Paid:
    order: int


class PaidHandler(anycqrs.EventHandler[anycqrs.NotificationEvent[Paid]]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, event: anycqrs.NotificationEvent[Paid]) -> None:
        SEEN.append((event.payload.order, self.session.number))


SEEN: list[tuple[int, int]] = []


async def test_a_scope_per_consumed_message(kind: str, journal: Journal) -> None:
    SEEN.clear()
    mediator = events_bootstrap.bootstrap(
        di_container=build(kind, [PaidHandler], journal),
        events_mapper=lambda events: events.bind(anycqrs.NotificationEvent[Paid], PaidHandler),
    )
    transport = InMemoryTransport()
    for order in (1, 2, 3):
        transport.put_event(anycqrs.NotificationEvent(payload=Paid(order), topic="t", key="k"))
    transport.close()
    with anyio.fail_after(10):
        await consume(mediator, transport, concurrency=1)
    assert SEEN == [(1, 1), (2, 2), (3, 3)]
    assert len(journal.finals()) == 3
    assert len(transport.settled) == 3


class Orphan:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock


class Clock:
    pass


@attrs.frozen
class Tick(anycqrs.Request):
    pass


class TickHandler(anycqrs.RequestHandler[Tick, None]):
    def __init__(self, orphan: Orphan) -> None:
        super().__init__()

    async def handle(self, request: Tick) -> None:
        return None


class TestResolutionErrors:
    """A dependency the container can't build is a HandlerResolutionError."""

    async def test_dishka(self) -> None:
        from dishka import Provider, Scope, make_async_container

        provider = Provider(scope=Scope.REQUEST)
        provider.provide(TickHandler)
        provider.provide(Orphan)
        container = make_async_container(provider, lock_factory=anyio.Lock, skip_validation=True)
        mediator = requests_bootstrap.bootstrap(
            di_container=container,
            commands_mapper=lambda requests: requests.bind(Tick, TickHandler),
        )
        with anyio.fail_after(10), pytest.raises(anycqrs.errors.HandlerResolutionError) as caught:
            await mediator.send(Tick())
        assert caught.value.missing is Clock
        assert caught.value.message_type is Tick

    async def test_dependency_injector(self) -> None:
        from dependency_injector import containers

        mediator = requests_bootstrap.bootstrap(
            di_container=containers.DynamicContainer(),
            commands_mapper=lambda requests: requests.bind(Tick, TickHandler),
        )
        with anyio.fail_after(10), pytest.raises(anycqrs.errors.HandlerResolutionError) as caught:
            await mediator.send(Tick())
        assert caught.value.missing is TickHandler
