"""Per-dispatch scopes: one unit of work around a handler run.

A handler endpoint whose container is an `anycqrs.container.ScopedContainer`
runs each call inside `in_scope`: the scope opens, the handler (and its
dependencies) are resolved from the scope's resolver, the handler runs and
its events are taken, then the scope closes, shielded with a deadline,
learning the outcome (the exception, or `None`). A run nested in another
run of the same container (a chain's next link, a `send` from inside a
handler) joins the open scope instead of opening its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

import anyio

T = TypeVar("T")

SCOPE_CLOSE_TIMEOUT = 30.0
"""Seconds a scope's finalizers get to run (shielded from cancellation)."""


class _Resolver(Protocol):
    async def resolve(self, type_: type[T], /) -> T: ...


class _Scoped(Protocol):
    def scope(self) -> AbstractAsyncContextManager[_Resolver]: ...


_OPEN: ContextVar[tuple[object, _Resolver] | None] = ContextVar("anycqrs_scope", default=None)
"""The scoped container whose scope the running handler is in, and its resolver."""


def current_resolver(container: object) -> _Resolver | None:
    """The resolver of `container`'s scope open in this context, if any."""
    open_ = _OPEN.get()
    if open_ is not None and open_[0] is container:
        return open_[1]
    return None


async def in_scope(container: _Scoped, body: Callable[[T], Awaitable[Any]], arg: T) -> Any:
    """`await body(arg)` inside a scope of `container` (joining the one open
    in this context, if any).

    The scope's `__aexit__` gets the exception `body` raised (or none), runs
    shielded from cancellation within `SCOPE_CLOSE_TIMEOUT`, and cannot
    swallow the exception. A finalizer failing on success makes the run
    fail: a unit of work that could not commit did not succeed.
    """
    if current_resolver(container) is not None:
        return await body(arg)
    manager = container.scope()
    resolver = await manager.__aenter__()
    token = _OPEN.set((container, resolver))
    try:
        result = await body(arg)
    except BaseException as error:
        _OPEN.reset(token)
        await leave(manager, error)
        raise
    _OPEN.reset(token)
    await leave(manager, None)
    return result


async def leave(manager: AbstractAsyncContextManager[Any], error: BaseException | None) -> None:
    """Exit a scope's `manager` with the outcome `error` (`None`: success),
    shielded from cancellation, within `SCOPE_CLOSE_TIMEOUT`."""
    with anyio.fail_after(SCOPE_CLOSE_TIMEOUT, shield=True):  # one shielded scope
        if error is None:
            await manager.__aexit__(None, None, None)
        else:
            await manager.__aexit__(type(error), error, error.__traceback__)


def scoped_factory(container: Any, type_: type) -> Callable[[], Awaitable[Any]]:
    """A builder of `type_` from the scope of `container` open in this
    context (outside any scope: the container's own `resolve`)."""
    resolve = container.resolve

    def make() -> Awaitable[Any]:
        open_ = _OPEN.get()
        if open_ is not None and open_[0] is container:
            return open_[1].resolve(type_)
        return resolve(type_)  # type: ignore[no-any-return]

    return make
