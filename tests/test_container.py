from __future__ import annotations

import abc
from typing import Any, Protocol

import lagom
import pytest

from anycqrs.container import Container, LagomContainer, as_container, factory_for, is_sync

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


def test_definitions_are_respected_and_new_ones_picked_up() -> None:
    raw = lagom.Container()
    container = LagomContainer(raw)
    make = container.factory(Service)
    assert make().clock is not make().clock
    clock = Clock()
    raw[Clock] = clock  # a new definition after the first resolve
    assert make().clock is clock
    assert make().repo.clock is clock


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
    assert not is_sync(custom)


async def test_factory_for_sync_and_async() -> None:
    class SyncResolve:
        def resolve(self, type_: Any) -> Any:
            return type_()

    sync = SyncResolve()
    assert is_sync(sync)  # type: ignore[arg-type]
    assert isinstance(factory_for(sync, Clock)(), Clock)  # type: ignore[arg-type]

    class AsyncResolve:
        async def resolve(self, type_: Any) -> Any:
            return type_()

    instance = await factory_for(AsyncResolve(), Clock)()
    assert isinstance(instance, Clock)
