from __future__ import annotations

import abc
from typing import Any, Protocol

import lagom
import pytest

from anycqrs.container import (
    Container,
    FactoryContainer,
    LagomContainer,
    _factory_for,
    _is_sync,
    as_container,
)

pytestmark = pytest.mark.anyio


class Clock:
    pass


class Repo:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock


class Service:
    def __init__(self, repo: Repo, clock: Clock) -> None:
        self.repo = repo
        self.clock = clock


class WithDefault:
    def __init__(self, size: int = 3) -> None:
        self.size = size


class Port(Protocol):
    def ping(self) -> str: ...


class Abstract(abc.ABC):
    @abc.abstractmethod
    def run(self) -> None: ...


class Concrete(Abstract):
    def run(self) -> None:
        pass


def test_autowiring_builds_new_instances_each_time() -> None:
    container = LagomContainer()
    make = container.factory(Service)
    first, second = make(), make()
    assert isinstance(first.repo.clock, Clock)
    assert first is not second
    assert first.clock is not second.clock


def test_definitions_are_respected_until_first_use() -> None:
    raw = lagom.Container()
    container = LagomContainer(raw)
    clock = Clock()
    raw[Clock] = clock  # defined after wrapping, before the first use of Service
    make = container.factory(Service)
    assert make().clock is clock
    assert make().repo.clock is clock


def test_later_definitions_need_a_new_adapter() -> None:
    raw = lagom.Container()
    container = LagomContainer(raw)
    assert container.factory(Service)().clock is not container.factory(Service)().clock
    clock = Clock()
    raw[Clock] = clock  # after Service's plan was compiled: this adapter keeps its plan
    assert container.factory(Service)().clock is not clock
    assert LagomContainer(raw).factory(Service)().clock is clock  # what with_container does


def test_no_private_lagom_attribute_is_read() -> None:
    import inspect

    import anycqrs.container

    assert "_registered_types" not in inspect.getsource(anycqrs.container)


def test_lagom_specific_cases_are_delegated() -> None:
    raw = lagom.Container()
    raw[Abstract] = Concrete  # type: ignore[type-abstract]
    container = LagomContainer(raw)
    assert container.resolve_now(WithDefault).size == 3
    assert isinstance(container.resolve_now(Abstract), Concrete)  # type: ignore[type-abstract]
    with pytest.raises(lagom.exceptions.UnresolvableType):
        container.resolve_now(Port)  # type: ignore[type-abstract]


async def test_async_resolve() -> None:
    container = LagomContainer()
    assert isinstance(await container.resolve(Repo), Repo)
    assert isinstance(container, Container)


def test_as_container() -> None:
    raw = lagom.Container()
    wrapped = as_container(raw)
    assert isinstance(wrapped, LagomContainer)
    assert wrapped.container is raw
    assert isinstance(as_container(None), LagomContainer)
    with pytest.raises(TypeError, match="not a container"):
        as_container(object())

    class Custom:
        async def resolve(self, type_: Any) -> Any:
            return type_()

    custom = Custom()
    assert as_container(custom) is custom
    assert not _is_sync(custom)


async def test_factory_capability_is_declared() -> None:
    assert isinstance(LagomContainer(), FactoryContainer)
    assert _is_sync(LagomContainer())
    assert isinstance(_factory_for(LagomContainer(), Clock)(), Clock)

    class SyncResolve:
        def resolve(self, type_: Any) -> Any:
            return type_()

    sync = as_container(SyncResolve())  # wrapped: its resolve is synchronous
    assert isinstance(sync, FactoryContainer)
    assert _is_sync(sync)
    assert isinstance(_factory_for(sync, Clock)(), Clock)
    assert isinstance(await sync.resolve(Clock), Clock)

    class AsyncResolve:
        async def resolve(self, type_: Any) -> Any:
            return type_()

    plain = as_container(AsyncResolve())
    assert not isinstance(plain, FactoryContainer)
    assert not _is_sync(plain)
    instance = await _factory_for(plain, Clock)()
    assert isinstance(instance, Clock)

    class WithFactory:
        async def resolve(self, type_: Any) -> Any:
            return type_()

        def factory(self, type_: Any) -> Any:
            return type_

    declared = WithFactory()
    assert as_container(declared) is declared
    assert _is_sync(declared)
