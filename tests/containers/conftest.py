"""One unit of work in four containers: a `Session` per scope whose
finalizer logs how the scope ended, a `Repo` sharing it, and the handler
classes a test asks for, each built by lagom (`ScopedLagomContainer`),
dishka, `di` and dependency-injector."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import anyio
import attrs
import pytest

KINDS = ("lagom", "dishka", "di", "dependency_injector")

OUTCOME_AWARE = {"lagom", "dishka", "di"}
"""The kinds whose finalizer learns the outcome (dependency-injector's does not)."""


class Session:
    def __init__(self, number: int) -> None:
        self.number = number


class Repo:
    def __init__(self, session: Session) -> None:
        self.session = session


@attrs.define
class Journal:
    """What the scopes did, in order: ("open", n), ("commit", n),
    ("rollback", n, error type name), ("close", n) (no outcome known)."""

    entries: list[tuple[Any, ...]] = attrs.field(factory=list)
    numbers: Any = attrs.field(factory=lambda: itertools.count(1))

    def opened(self) -> Session:
        session = Session(next(self.numbers))
        self.entries.append(("open", session.number))
        return session

    async def ended(self, session: Session, error: BaseException | None) -> None:
        await anyio.sleep(0)  # a finalizer that awaits: it must be shielded
        if error is None:
            self.entries.append(("commit", session.number))
        else:
            self.entries.append(("rollback", session.number, type(error).__name__))

    def closed(self, session: Session) -> None:
        self.entries.append(("close", session.number))

    def finals(self) -> list[tuple[Any, ...]]:
        return [e for e in self.entries if e[0] != "open"]


def build(kind: str, handlers: Sequence[type], journal: Journal) -> Any:
    """What a user passes as `di_container` for `kind`."""
    return _BUILDERS[kind](handlers, journal)


def _lagom(handlers: Sequence[type], journal: Journal) -> Any:
    import lagom

    from anycqrs.container import ScopedLagomContainer

    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[Session]:
        opened = journal.opened()
        try:
            yield opened
        except BaseException as error:
            await journal.ended(opened, error)  # awaits: anycqrs shields the close
            raise
        await journal.ended(opened, None)

    return ScopedLagomContainer(lagom.Container(), scoped={Session: session})


def _dishka(handlers: Sequence[type], journal: Journal) -> Any:
    from dishka import Provider, Scope, make_async_container

    provider = Provider(scope=Scope.REQUEST)

    async def session() -> AsyncIterator[Session]:
        opened = journal.opened()
        error = yield opened
        await journal.ended(opened, error)

    provider.provide(session)
    provider.provide(Repo)
    for handler in handlers:
        provider.provide(handler, cache=False)  # a new handler per resolve
    return make_async_container(provider, lock_factory=anyio.Lock)


def _di(handlers: Sequence[type], journal: Journal) -> Any:
    import di
    from di import bind_by_type
    from di.dependent import Dependent

    async def session() -> AsyncIterator[Session]:
        opened = journal.opened()
        try:
            yield opened
        except BaseException as error:
            await journal.ended(opened, error)
            raise
        await journal.ended(opened, None)

    container = di.Container()
    container.bind(bind_by_type(Dependent(session, scope="request"), Session))
    return container


def _dependency_injector(handlers: Sequence[type], journal: Journal) -> Any:
    from dependency_injector import containers, providers

    # a synchronous resource: dependency-injector awaits async providers
    # with asyncio futures, so they don't run under trio
    def session() -> Iterator[Session]:
        opened = journal.opened()
        yield opened
        journal.closed(opened)

    container = containers.DynamicContainer()
    container.session = providers.ContextLocalResource(session)
    container.repo = providers.Factory(Repo, session=container.session)
    for handler in handlers:
        setattr(
            container,
            handler.__name__.lower(),
            providers.Factory(handler, repo=container.repo, session=container.session),
        )
    return container


_BUILDERS: dict[str, Callable[[Sequence[type], Journal], Any]] = {
    "lagom": _lagom,
    "dishka": _dishka,
    "di": _di,
    "dependency_injector": _dependency_injector,
}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def journal() -> Journal:
    return Journal()
