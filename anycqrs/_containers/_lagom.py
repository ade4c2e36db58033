"""Per-dispatch scopes over a lagom container."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import lagom

if TYPE_CHECKING:
    from ..container import LagomContainer

T = TypeVar("T")


class ScopedLagomContainer:
    """A `lagom.Container` with per-dispatch scoped dependencies; a
    `ScopedContainer`.

    lagom has no scopes of its own: `scoped` maps each per-dispatch type to a
    zero-argument callable returning an async context manager (an
    `@contextlib.asynccontextmanager` function, typically). When a dispatch
    starts, every scoped type is entered, in mapping order, so the handler
    and all its dependencies share one instance per dispatch; when it ends
    they are exited newest first and each learns the outcome: the handler's
    exception is thrown in at its `yield` (`try: yield session` /
    `except: rollback; raise` / `else: commit`).

    Everything else is built by `LagomContainer` (compiled construction
    plans, lagom's own definitions) over a clone of `container` taken here,
    in which each scoped type reads the value of the running scope: define
    what the handlers need before wrapping. Scoped values are entered
    eagerly, for every dispatch through this container, needed or not:
    scope only what a unit of work needs.

    Args:
        container: the lagom container (cloned; its definitions are shared).
        scoped: per-dispatch types and their context-manager factories.

    Example:
        ```python
        @contextlib.asynccontextmanager
        async def session() -> AsyncIterator[Session]:
            ...

        container = ScopedLagomContainer(lagom.Container(), scoped={Session: session})
        ```
    """

    __slots__ = ("_container", "_current", "_plans", "_scoped")

    def __init__(
        self,
        container: lagom.Container | None = None,
        *,
        scoped: Mapping[type, Callable[[], AbstractAsyncContextManager[Any]]],
    ) -> None:
        from ..container import LagomContainer

        self._container = container if container is not None else lagom.Container()
        self._scoped = tuple(scoped.items())
        self._current: ContextVar[dict[type, Any] | None] = ContextVar(
            "anycqrs_lagom_scope", default=None
        )
        planned = self._container.clone()
        for type_, _ in self._scoped:
            planned[type_] = self._reader(type_)
        self._plans: LagomContainer = LagomContainer(planned)

    def _reader(self, type_: type) -> Callable[[], Any]:
        current = self._current

        def read() -> Any:
            values = current.get()
            if values is None:
                raise LookupError(
                    f"{type_.__qualname__} is scoped in a ScopedLagomContainer: "
                    "it exists only inside a dispatch (or `async with container.scope()`)"
                )
            return values[type_]

        return read

    @property
    def container(self) -> lagom.Container:
        """The wrapped lagom container."""
        return self._container

    async def resolve(self, type_: type[T], /) -> T:
        """Build `type_` (a scoped type only inside a scope)."""
        return self._plans.factory(type_)()

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[ScopedLagomContainer]:
        """One dispatch's scoped values (see the class docs)."""
        values: dict[type, Any] = {}
        async with AsyncExitStack() as stack:
            for type_, factory in self._scoped:
                values[type_] = await stack.enter_async_context(factory())
            previous = self._current.get()
            self._current.set(values)
            try:
                yield self
            finally:
                self._current.set(previous)
