"""Per-dispatch scopes over a lagom container."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import lagom

T = TypeVar("T")


class ScopedLagomContainer:
    """A `lagom.Container` with per-dispatch scoped dependencies; a
    `ScopedContainer`.

    lagom has no scopes of its own: `scoped` maps each per-dispatch type to a
    zero-argument callable returning an async context manager (an
    `@contextlib.asynccontextmanager` function, typically). When a dispatch
    starts, every scoped type is entered, in mapping order, and defined in a
    clone of `container` for that dispatch only, so the handler and all its
    dependencies share one instance; when it ends they are exited newest
    first and each learns the outcome: the handler's exception is thrown in
    at its `yield` (`try: yield session` / `except: rollback; raise` /
    `else: commit`). Everything else is lagom's own resolution.

    Scoped values are entered eagerly, for every dispatch through this
    container, needed or not: scope only what a unit of work needs.

    Args:
        container: the lagom container (its definitions are shared).
        scoped: per-dispatch types and their context-manager factories.

    Example:
        ```python
        @contextlib.asynccontextmanager
        async def session() -> AsyncIterator[Session]:
            ...

        container = ScopedLagomContainer(lagom.Container(), scoped={Session: session})
        ```
    """

    __slots__ = ("_container", "_scoped")

    def __init__(
        self,
        container: lagom.Container | None = None,
        *,
        scoped: Mapping[type, Callable[[], AbstractAsyncContextManager[Any]]],
    ) -> None:
        self._container = container if container is not None else lagom.Container()
        self._scoped = tuple(scoped.items())

    @property
    def container(self) -> lagom.Container:
        """The wrapped lagom container."""
        return self._container

    async def resolve(self, type_: type[T], /) -> T:
        """Build `type_` from the wrapped container (no scoped values)."""
        return self._container.resolve(type_)

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[_LagomScope]:
        """One dispatch's clone, with the scoped values defined (see the
        class docs)."""
        async with AsyncExitStack() as stack:
            clone = self._container.clone()
            for type_, factory in self._scoped:
                clone[type_] = await stack.enter_async_context(factory())
            yield _LagomScope(clone)


class _LagomScope:
    """The resolver of one lagom scope."""

    __slots__ = ("_container",)

    def __init__(self, container: lagom.Container) -> None:
        self._container = container

    async def resolve(self, type_: type[T], /) -> T:
        return self._container.resolve(type_)
