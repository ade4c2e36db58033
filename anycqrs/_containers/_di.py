"""The `di` adapter (python-cqrs's default container; optional)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import di

T = TypeVar("T")


class DiContainer:
    """Adapts a `di.Container` (the `di` package); a `ScopedContainer`.

    Each dispatch enters the container's `scope` (`"request"` by default):
    dependencies declared in that scope (`Dependent(make_session,
    scope="request")`, bound with `bind_by_type`) are shared by everything
    the dispatch builds and finalized when it ends, generator dependencies
    newest first; a generator learns the outcome because the handler's
    exception is thrown in at its `yield` (`try: yield session` /
    `except: rollback` / `else: commit`). The handler itself is built fresh
    on every resolve. Solved graphs are cached per type.

    Args:
        container: the `di.Container` with your binds.
        scope: the scope name each dispatch enters (default `"request"`).

    Example:
        ```python
        container = di.Container()
        container.bind(bind_by_type(Dependent(make_session, scope="request"), Session))
        mediator = bootstrap(di_container=container, ...)  # wrapped in DiContainer
        ```
    """

    __slots__ = ("_container", "_scope", "_solved")

    def __init__(self, container: di.Container, *, scope: Hashable = "request") -> None:
        self._container = container
        self._scope = scope
        self._solved: dict[type, Any] = {}

    @property
    def container(self) -> di.Container:
        """The wrapped `di` container."""
        return self._container

    def _solve(self, type_: type) -> Any:
        solved = self._solved.get(type_)
        if solved is None:
            from di.dependent import Dependent

            solved = self._solved[type_] = self._container.solve(
                Dependent(type_, scope=self._scope, use_cache=False), scopes=[self._scope]
            )
        return solved

    async def resolve(self, type_: type[T], /) -> T:
        """Build `type_` in a one-shot scope (outside a dispatch scope: its
        scoped dependencies are finalized before this returns)."""
        async with self.scope() as resolver:
            return await resolver.resolve(type_)

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[_DiScope]:
        """One `di` scope for one dispatch (see the class docs)."""
        async with self._container.enter_scope(self._scope) as state:
            yield _DiScope(self, state)


class _DiScope:
    """The resolver of one `di` scope."""

    __slots__ = ("_adapter", "_state")

    def __init__(self, adapter: DiContainer, state: Any) -> None:
        self._adapter = adapter
        self._state = state

    async def resolve(self, type_: type[T], /) -> T:
        from di.executors import AsyncExecutor

        solved = self._adapter._solve(type_)
        result: T = await solved.execute_async(executor=AsyncExecutor(), state=self._state)
        return result
