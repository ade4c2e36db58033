"""The dishka adapter (dishka is optional: imported when used)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

if TYPE_CHECKING:
    from dishka import AsyncContainer

T = TypeVar("T")


class DishkaContainer:
    """Adapts a dishka `AsyncContainer`; a `ScopedContainer`.

    Each dispatch runs in a child container entered at `scope` (dishka's
    `Scope.REQUEST` by default): the handler and its REQUEST-scoped
    dependencies are built there, and the child's finalizers (generator
    providers) run when the dispatch ends, newest first. A finalizer learns
    the outcome the dishka way: `exc = yield value` receives the exception
    the handler raised, or `None`. The child scope locks with an
    `anyio.Lock`, so it runs on trio too; create the root container with
    `make_async_container(..., lock_factory=anyio.Lock)` for the same reason
    (dishka's default root lock is asyncio's).

    Args:
        container: the root (usually APP-scoped) dishka container.
        scope: the dishka scope a dispatch enters (default `Scope.REQUEST`);
            `None` resolves from `container` itself, without a child scope
            (pass a container that is already request-scoped).

    Example:
        ```python
        container = make_async_container(provider, lock_factory=anyio.Lock)
        mediator = bootstrap(di_container=DishkaContainer(container), ...)
        ```
    """

    __slots__ = ("_container", "_scope")

    def __init__(self, container: AsyncContainer, *, scope: Any = "request") -> None:
        if scope == "request":
            from dishka import Scope

            scope = Scope.REQUEST
        self._container = container
        self._scope = scope

    @property
    def container(self) -> AsyncContainer:
        """The wrapped dishka container."""
        return self._container

    @staticmethod
    def missing(error: BaseException) -> Any | None:
        """The type dishka's "can't build" `error` names, else `None`."""
        from dishka.exceptions import NoFactoryError

        if isinstance(error, NoFactoryError):
            return error.requested.type_hint
        return None

    async def resolve(self, type_: type[T], /) -> T:
        """Get `type_` from the wrapped container (outside a dispatch scope)."""
        result: T = await self._container.get(type_)
        return result

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[_DishkaScope]:
        """A dishka child container for one dispatch (see the class docs)."""
        if self._scope is None:
            yield _DishkaScope(self._container)
            return
        async with self._container(scope=self._scope, lock_factory=anyio.Lock) as child:
            yield _DishkaScope(child)


class _DishkaScope:
    """The resolver of one dishka scope."""

    __slots__ = ("_container",)

    def __init__(self, container: AsyncContainer) -> None:
        self._container = container

    async def resolve(self, type_: type[T], /) -> T:
        result: T = await self._container.get(type_)
        return result
