"""Streaming requests: a handler that yields results, a mediator that streams them.

How a stream runs (all of it in the consumer's own task, no task is spawned):

* `mediator.stream(request)` looks the binding up (raising
  `anycqrs.errors.RequestHandlerDoesNotExist` at once) and returns a
  `RequestStream`; nothing runs until the first item is asked for.
* each `__anext__` advances the handler's async generator by one item, takes
  the events the handler emitted so far and dispatches them, passes the item
  through the middlewares and only then returns it: the events of item *k* are
  handled before item *k* reaches the consumer.
* the handler's generator is closed (its `finally` runs) when the stream
  ends, fails, or the consumer stops early. `async with` (or
  `contextlib.aclosing`) closes it deterministically in every case, even if
  the handler's cleanup awaits; a plain `async for` that is left early
  closes it on the spot when the stream object is dropped (see
  `RequestStream`).
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic

from typing_extensions import TypeVar

from .._handlers import EventSource, declared_args
from .._routing import Route, describe
from ..errors import BindingError, RequestHandlerDoesNotExist
from ..messages import Event, Request
from ._base import RequestMediatorBase
from ._map import RequestMap
from ._stream import RequestStream

__all__ = ["RequestStream", "StreamingRequestHandler", "StreamingRequestMediator"]

ReqT = TypeVar("ReqT", contravariant=True)
ResT = TypeVar("ResT", default=Any, covariant=True)
R = TypeVar("R", default=Any)

StreamSource = Callable[[Any], AsyncIterator[tuple[Any, Sequence[Event]]]]
"""What a streaming route builds: `request -> async iterator of (item, events)`."""


class StreamingRequestHandler(EventSource, abc.ABC, Generic[ReqT, ResT]):
    """Handles one request by yielding results one by one.

    `handle` is an async generator. Events recorded with `emit` before
    a `yield` are dispatched before that item reaches the consumer; events
    emitted after the last `yield` are dispatched before the stream ends.
    Do not `yield` from inside a task group or a cancel scope (the consumer
    runs between two items, in the same task).

    Example:
        ```python
        class ExportRows(anycqrs.StreamingRequestHandler[Export, Row]):
            def __init__(self, db: Database) -> None:
                self.db = db

            async def handle(self, request: Export) -> AsyncIterator[Row]:
                async for row in self.db.rows(request.table):
                    self.emit(RowExported(row_id=row.id))
                    yield row
        ```
    """

    @abc.abstractmethod
    def handle(self, request: ReqT, /) -> AsyncIterator[ResT]:
        """Yield the results of `request` (write it as an `async def` with `yield`)."""


def is_streaming_handler(handler: Any) -> bool:
    """Whether `handler` is a class whose `handle` is an async generator."""
    if not isinstance(handler, type):
        return False
    if issubclass(handler, StreamingRequestHandler):
        return True
    return inspect.isasyncgenfunction(getattr(handler, "handle", None))


def check_streaming_binding(request_type: type, binding: Any) -> None:
    """Raise `BindingError` unless `binding` can stream `request_type`."""
    if isinstance(binding, Route):
        if not binding.streaming:
            raise BindingError(
                f"{request_type.__qualname__} is bound to {describe(binding)}, which does not "
                "stream; bind a StreamingRequestHandler or a StreamingRequestHandlerFallback"
            )
        return
    if not is_streaming_handler(binding):
        raise BindingError(
            f"{describe(binding)} does not stream: a handler bound "
            "in a StreamingRequestMediator must be a StreamingRequestHandler (an async "
            "generator `handle`)"
        )
    declared = declared_args(binding, StreamingRequestHandler)
    if declared and isinstance(declared[0], type) and not issubclass(request_type, declared[0]):
        raise BindingError(
            f"{binding.__qualname__} handles {declared[0].__qualname__}, "
            f"not {request_type.__qualname__}"
        )


class StreamingRequestMediator(RequestMediatorBase):
    """Streams the results of requests bound to `StreamingRequestHandler`s.

    `stream(request)` returns a `RequestStream`, used directly with
    `async for`. For each item: the handler produces it, the events the
    handler emitted are dispatched (sequentially or in parallel, per the
    settings), the middlewares see the item, then the consumer gets it. Items
    arrive in order; a handler error reaches the consumer after the items
    already delivered, and its pending events are not dispatched.

    Middlewares wrap **each item** on its way to the consumer: they are called
    as `middleware(item, call_next)` and `await call_next(item)` returns
    what the consumer receives (log, measure, enrich or redact items there).
    Work to do once per stream (authorization, a tracing span) belongs around
    the `async with mediator.stream(...)` block.

    Everything runs in the consumer's task; no task outlives the stream; the
    mediator never yields to the consumer from inside a task group or a
    cancel scope, so it is safe under trio and asyncio alike.

    Example:
        ```python
        mediator = anycqrs.requests.bootstrap.bootstrap_streaming(queries_mapper=bind)
        async with mediator.stream(ExportRows(table="users")) as rows:
            async for row in rows:
                print(row)
        ```
    """

    __slots__ = ("_sources", "_wrap")

    def _validate(self, request_map: RequestMap) -> None:
        for request_type, binding in request_map.items():
            check_streaming_binding(request_type, binding)

    def _setup(self, original: Any) -> None:
        self._sources: dict[type, Any] = {}
        self._wrap = self._build_wrap() if original is None else original._wrap

    def _build_wrap(self) -> Callable[[Any], Awaitable[Any]] | None:
        if not len(self._chain):
            return None

        async def deliver(item: Any) -> Any:
            return item

        return self._chain.wrap(deliver)

    def stream(self, request: Request[R]) -> RequestStream[R]:
        """Stream the results of `request`.

        Returns:
            A `RequestStream`: iterate it with `async for` (inside
            `async with` for deterministic cleanup when you may stop early).

        Raises:
            RequestHandlerDoesNotExist: nothing is bound to the request's type
                (raised here, before iteration).

        While iterating, the handler's exception reaches the consumer unchanged
        and `anycqrs.errors.EventDispatchError` (with the item in
        `.response`) reports a failed event dispatch; both end the stream.
        """
        source = self._sources.get(type(request))
        if source is None:
            source = self._source(type(request))
        if self._tracer is not None:
            from ._traced_stream import TracedRequestStream

            return TracedRequestStream(self, request, source)
        return RequestStream(self, request, source)

    def _source(self, request_type: type) -> Any:
        binding = self._requests.get(request_type)
        if binding is None:
            raise RequestHandlerDoesNotExist(request_type)
        source: Any
        if isinstance(binding, Route):
            source = self._handlers.binding(binding)
        else:
            source = self._handlers.get(binding)
        self._sources[request_type] = source
        return source

    async def _dispatch(self, item: Any, events: Sequence[Event]) -> None:
        await self._events.dispatch_after(item, events)
