"""`RequestStream`: the results of one streamed request, item by item.

The iterator half of `anycqrs.requests._streaming` (how a stream runs is
described there): advancing the handler's generator, dispatching the events
of each item before it is delivered, the middlewares, and closing the
generator (and a scoped container's scope) in every case.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic

import anyio
from typing_extensions import TypeVar

from .._containers._scope import leave
from .._endpoint import HandlerEndpoint, resolution_failed
from .._handlers import take_events, take_list
from ..messages import Event
from ._relay import relay, unhooked
from ._sources import TRAILER

if TYPE_CHECKING:
    from ._streaming import StreamingRequestMediator

__all__ = ["CLOSE_TIMEOUT", "RequestStream"]

R = TypeVar("R", default=Any)

CLOSE_TIMEOUT = 10.0
"""Seconds a stream's cleanup may take after cancellation (shielded)."""


class RequestStream(Generic[R]):
    """The results of one streamed request: an async iterator you may also
    use as an async context manager.

    `async for item in mediator.stream(request)` works as is. Leaving the
    loop early (`break`, an exception, a cancellation or a timeout) closes
    the handler's generator right away when the stream object is dropped,
    which CPython does as the loop exits: the handler's `finally` runs
    before the next statement. If that cleanup has to *wait* (it awaits I/O),
    it cannot finish there; it is interrupted and a `ResourceWarning` tells
    you so. Use `async with` for cleanup that awaits, or when you keep a
    reference to the stream:

    ```python
    async with mediator.stream(ExportRows(table="users")) as rows:
        async for row in rows:
            if row.last:
                break
    # the handler's finally has fully run here, under asyncio and trio
    ```

    `aclose` does the same explicitly (`contextlib.aclosing` works).
    """

    __slots__ = (
        "__weakref__",
        "_agen",
        "_done",
        "_fast",
        "_handler",
        "_mediator",
        "_request",
        "_scope",
        "_source",
        "_take",
        "_wrap",
    )

    def __init__(self, mediator: StreamingRequestMediator, request: Any, source: Any) -> None:
        self._mediator = mediator
        self._request = request
        self._source = source
        self._wrap = mediator._wrap
        self._agen: Any = None
        self._handler: Any = None
        self._fast: Any = None
        self._take: Callable[[Any], Sequence[Event]] = take_events
        self._done = False
        self._scope: Any = None  # the open scope of a scoped container (see `_open_scoped`)

    def __aiter__(self) -> AsyncIterator[R]:
        """The iterator `async for` uses: for a handler keeping the standard
        events list, no middleware and no scope (the common case), an async
        generator relaying the handler's items (`relay`: about half the
        per-item cost of a coroutine per `__anext__`); the stream itself
        otherwise. Either way the stream stays what closes the handler
        (`aclose`, or on the spot when it is dropped)."""
        source = self._source
        if (
            self._wrap is None
            and self._agen is None
            and not self._done
            and isinstance(source, HandlerEndpoint)
            and source.standard
            and source.scope is None
        ):
            return unhooked(relay(self))
        return self

    async def __aenter__(self) -> RequestStream[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _open(self) -> None:
        source = self._source
        if isinstance(source, HandlerEndpoint):
            if source.scope is not None:
                await self._open_scoped(source)
                return
            handler = await source.resolve(self._request)
            if source.standard:  # events read from the standard list
                self._fast = handler
            else:
                self._handler = handler
                self._take = source.take_events
            self._agen = handler.handle(self._request)
        else:
            self._agen = source(self._request)

    async def _open_scoped(self, source: HandlerEndpoint) -> None:
        """Open one scope for the whole stream and build the handler in it:
        it closes when the stream ends (with the handler's error, or none
        when it finished or the consumer left), shielded with a deadline.
        Item events are dispatched while it is open (each event handler in
        a scope of its own)."""
        assert source.scope is not None
        self._scope = manager = source.scope.scope()
        resolver = await manager.__aenter__()
        try:
            handler: Any = await resolver.resolve(source.handler_type)
        except Exception as error:
            await self._close_scope(error)
            resolution_failed(source.handler_type, self._request, error)
            raise
        except BaseException as error:
            await self._close_scope(error)
            raise
        self._handler = handler
        self._take = source.take_events
        self._agen = handler.handle(self._request)

    async def _close_scope(self, error: BaseException | None) -> None:
        manager, self._scope = self._scope, None
        if manager is not None:
            await leave(manager, error)

    async def __anext__(self) -> R:
        handler = self._fast
        if handler is None:
            return await self._next()
        try:
            item = await self._agen.__anext__()
        except StopAsyncIteration:
            self._finish()
            if handler._anycqrs_events:
                await self._mediator._dispatch(None, take_list(handler))
            raise
        except BaseException:
            self._finish()
            if handler._anycqrs_events:
                take_list(handler)  # a failed item's events are dropped (singletons)
            raise
        if handler._anycqrs_events:
            await self._deliver_events(item, take_list(handler))
        if self._wrap is None:
            return item  # type: ignore[no-any-return]
        return await self._wrapped(item)

    async def _next(self) -> R:
        """Everything but the fast path: opening, routes, duck-typed handlers."""
        agen = self._agen
        if agen is None:
            if self._done:
                raise StopAsyncIteration
            try:
                await self._open()
            except BaseException:
                self._done = True
                raise
            if self._fast is not None:
                return await self.__anext__()
            agen = self._agen
        handler = self._handler
        try:
            item = await agen.__anext__()
        except StopAsyncIteration:
            self._finish()
            if self._scope is not None:
                await self._close_scope(None)
            if handler is not None:
                trailing = self._take(handler)
                if trailing:
                    await self._mediator._dispatch(None, trailing)
            raise
        except BaseException as error:
            self._finish()
            if handler is not None:
                self._take(handler)  # a failed item's events are dropped (singletons)
            if self._scope is not None:
                await self._close_scope(error)
            raise
        if handler is None:
            item, events = item
            if item is TRAILER:
                if events:
                    await self._deliver_events(None, events)
                return await self._next()
            if events:
                await self._deliver_events(item, events)
        else:
            events = self._take(handler)
            if events:
                await self._deliver_events(item, events)
        if self._wrap is None:
            return item  # type: ignore[no-any-return]
        return await self._wrapped(item)

    async def _wrapped(self, item: Any) -> R:
        wrap = self._wrap
        assert wrap is not None
        try:
            result: R = await wrap(item)
        except BaseException as error:
            await self._stop(error)
            raise
        return result

    async def _deliver_events(self, item: Any, events: Sequence[Event]) -> None:
        try:
            await self._mediator._dispatch(item, events)
        except BaseException as error:
            await self._stop(error)
            raise

    def _finish(self) -> None:
        self._done = True
        self._agen = None
        self._handler = None
        self._fast = None

    async def aclose(self) -> None:
        """Stop the stream and close the handler's generator (its `finally`
        runs, shielded from cancellation for up to 10 seconds). Idempotent."""
        await self._stop(None)

    async def _stop(self, error: BaseException | None) -> None:
        """`aclose`; a scope still open closes with `error` as its outcome."""
        agen = self._agen
        self._finish()
        if agen is not None:
            with anyio.CancelScope(shield=True), anyio.fail_after(CLOSE_TIMEOUT):
                await agen.aclose()
        if self._scope is not None:
            await self._close_scope(error)

    def __del__(self) -> None:
        if self._scope is not None:
            warnings.warn(
                "a stream with a scoped container was dropped before it ended: its scope "
                "was never closed (its finalizers did not run); iterate inside "
                "`async with mediator.stream(request) as items:`",
                ResourceWarning,
                stacklevel=1,
            )
        agen = self._agen
        if agen is None or agen.ag_frame is None:
            return
        self._agen = None
        closer = agen.aclose()
        try:
            closer.send(None)
        except StopIteration:
            return
        # The handler's cleanup awaits something that can't complete here.
        closer.close()
        warnings.warn(
            f"the cleanup of {getattr(agen, '__qualname__', agen)!r} awaited after the "
            "consumer left the stream early and was interrupted; iterate inside "
            "`async with mediator.stream(request) as items:` to let it finish",
            ResourceWarning,
            stacklevel=1,
        )
