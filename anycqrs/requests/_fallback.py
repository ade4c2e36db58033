"""Request fallbacks: run another handler when the primary fails."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import attrs

from .._breaker import CircuitBreakerLike, protected_name
from .._endpoint import Endpoints
from .._fallback import FallbackBinding, guarded
from .._handlers import declared_args
from .._routing import RequestEndpoint, Route, describe
from ..errors import BindingError
from ..messages import Event
from ._chain import CORRequestHandler
from ._handler import RequestHandler
from ._map import as_route, check_request_handler_class
from ._sources import stream_handler
from ._streaming import StreamingRequestHandler, is_streaming_handler

__all__ = ["RequestHandlerFallback", "StreamingRequestHandlerFallback"]


def _signature(target: Any, base: type) -> tuple[Any, Any]:
    """The declared `(request type, response type)` of a handler (`None` if unknown)."""
    if not isinstance(target, type):
        types = target.handler_types() if isinstance(target, Route) else ()
        signatures = [_signature(t, base) for t in types]
        request = next((s[0] for s in signatures if s[0] is not None), None)
        response = next((s[1] for s in signatures if s[1] is not None), None)
        return request, response
    for candidate in (base, CORRequestHandler):
        args = declared_args(target, candidate)
        if args:
            request = args[0] if isinstance(args[0], type) else None
            response = args[1] if len(args) > 1 and isinstance(args[1], type) else None
            return request, response
    return None, None


def _check_pair(owner: str, primary: Any, fallback: Any, base: type) -> None:
    p_req, p_res = _signature(primary, base)
    f_req, f_res = _signature(fallback, base)
    if (
        p_req is not None
        and f_req is not None
        and not (issubclass(p_req, f_req) or issubclass(f_req, p_req))
    ):
        raise BindingError(
            f"{owner}: the primary {describe(primary)} handles {p_req.__qualname__} but the "
            f"fallback {describe(fallback)} handles {f_req.__qualname__}"
        )
    if p_res is not None and f_res is not None and not issubclass(f_res, p_res):
        raise BindingError(
            f"{owner}: the fallback {describe(fallback)} returns {f_res.__qualname__}, which "
            f"is not a {p_res.__qualname__} (what the primary {describe(primary)} returns)"
        )


def _check_accepts(owner: str, target: Any, request_type: Any, base: type) -> None:
    if isinstance(target, Route):
        target.validate(request_type)
        return
    declared, _ = _signature(target, base)
    if (
        declared is not None
        and isinstance(request_type, type)
        and not issubclass(request_type, declared)
    ):
        raise BindingError(
            f"{owner}: {describe(target)} handles {declared.__qualname__}, "
            f"not {request_type.__qualname__}"
        )


@attrs.frozen(eq=False, repr=False)
class RequestHandlerFallback(FallbackBinding):
    """Bind a primary handler with a fallback that runs when it fails.

    The fallback runs when the primary raises one of `failure_exceptions`
    (any `Exception` when empty), or without trying the primary while its
    circuit breaker is open. Other errors propagate. Only the handler that
    produced the response contributes events (the failed primary's events
    are dropped). Failures of the event dispatch after a success are not
    handler failures: they raise `EventDispatchError` as usual.

    Both `primary` and `fallback` are `RequestHandler` classes, chains of
    responsibility (a list of `CORRequestHandler` classes, as
    `RequestMap.bind` takes) or other fallbacks. Mismatched declared types are rejected
    with `anycqrs.errors.BindingError` when the fallback is created or
    bound: the two must handle related request types, and the fallback's
    response type must be the primary's (or a subclass of it).

    Attributes:
        primary: the handler normally used (a chain given as a list is kept
            as its compiled route).
        fallback: the handler used instead (likewise).
        failure_exceptions: exception types that trigger the fallback.
        circuit_breaker: a `anycqrs.CircuitBreaker` protecting the primary.

    Example:
        ```python
        requests.bind(
            GetRates,
            anycqrs.RequestHandlerFallback(
                LiveRates, CachedRates, failure_exceptions=(TimeoutError, ConnectionError),
                circuit_breaker=anycqrs.CircuitBreaker(fail_max=3, reset_timeout=30),
            ),
        )
        ```
    """

    streaming = False

    def __attrs_post_init__(self) -> None:
        owner = type(self).__name__
        # a list is a chain of responsibility, as `RequestMap.bind` takes it
        object.__setattr__(self, "primary", as_route(self.primary))
        object.__setattr__(self, "fallback", as_route(self.fallback))
        for target in (self.primary, self.fallback):
            if isinstance(target, Route):
                if target.streaming:
                    raise BindingError(
                        f"{owner}: {describe(target)} streams; use a streaming fallback"
                    )
                continue
            check_request_handler_class(f"{owner}: ", target)
            if is_streaming_handler(target):
                raise BindingError(
                    f"{owner}: {target.__qualname__} streams; use StreamingRequestHandlerFallback"
                )
        _check_pair(owner, self.primary, self.fallback, RequestHandler)

    def validate(self, message_type: Any) -> None:
        """Both handlers must accept `message_type`."""
        owner = type(self).__name__
        _check_accepts(owner, self.primary, message_type, RequestHandler)
        _check_accepts(owner, self.fallback, message_type, RequestHandler)

    def build(self, endpoints: Endpoints) -> RequestEndpoint:
        """The endpoint: `request -> (response, events)`."""
        return guarded(
            endpoints.binding(self.primary),
            endpoints.binding(self.fallback),
            protected=self.primary,
            failure_exceptions=self.failure_exceptions,
            breaker=self.circuit_breaker,
        )


StreamSource = Callable[[Any], AsyncGenerator[tuple[Any, Sequence[Event]], None]]


def _stream_source(target: Any, endpoints: Endpoints) -> StreamSource:
    if isinstance(target, Route):
        built: StreamSource = endpoints.binding(target)
        return built
    endpoint = endpoints.get(target)

    def source(request: Any) -> AsyncGenerator[tuple[Any, Sequence[Event]], None]:
        return stream_handler(endpoint, request)

    return source


@attrs.frozen(eq=False, repr=False)
class StreamingRequestHandlerFallback(FallbackBinding):
    """A fallback for `anycqrs.StreamingRequestHandler`s.

    Same options and checks as `RequestHandlerFallback`. What the
    consumer sees:

    * the primary fails **before its first item** (one of
      `failure_exceptions`), or its circuit is open: the fallback's stream
      is delivered instead, transparently.
    * the primary fails **after** items were delivered: the error reaches the
      consumer after those items (items can't be taken back, and restarting
      with the fallback would deliver duplicates). The breaker counts it.

    The breaker records a success once the primary delivered its first item.

    Example:
        ```python
        queries.bind(
            Tail, anycqrs.StreamingRequestHandlerFallback(LiveTail, ReplayTail)
        )
        ```
    """

    streaming = True

    def __attrs_post_init__(self) -> None:
        owner = type(self).__name__
        for target in (self.primary, self.fallback):
            if isinstance(target, Route):
                if not target.streaming:
                    raise BindingError(f"{owner}: {describe(target)} does not stream")
                continue
            if not is_streaming_handler(target):
                raise BindingError(
                    f"{owner}: {describe(target)} is not a StreamingRequestHandler class"
                )
        _check_pair(owner, self.primary, self.fallback, StreamingRequestHandler)

    def validate(self, message_type: Any) -> None:
        """Both handlers must accept `message_type`."""
        owner = type(self).__name__
        _check_accepts(owner, self.primary, message_type, StreamingRequestHandler)
        _check_accepts(owner, self.fallback, message_type, StreamingRequestHandler)

    def build(self, endpoints: Endpoints) -> StreamSource:
        """The stream source: `request -> async iterator of (item, events)`."""
        primary = _stream_source(self.primary, endpoints)
        fallback = _stream_source(self.fallback, endpoints)
        breaker = self.circuit_breaker
        name = protected_name(self.primary)

        async def open_primary(request: Any) -> tuple[Stream, Any, bool]:
            return (*await _first(primary(request)), True)

        async def open_fallback(request: Any) -> tuple[Stream, Any, bool]:
            return (*await _first(fallback(request)), False)

        # The one fallback mechanism decides on the first item.
        opened = guarded(
            open_primary,
            open_fallback,
            protected=self.primary,
            failure_exceptions=self.failure_exceptions,
            breaker=breaker,
        )

        async def source(request: Any) -> Stream:
            stream, first, from_primary = await opened(request)
            if first is _END:
                return
            rest = stream
            if from_primary and breaker is not None:
                rest = _counted(stream, breaker, name)
            try:
                yield first
                async for pair in rest:
                    yield pair
            finally:
                await rest.aclose()
                await stream.aclose()  # no-op unless `rest` never started

        return source


Stream = AsyncGenerator[tuple[Any, Sequence[Event]], None]

_END: Any = object()
"""What `_first` gives for a stream that ended without an item."""


async def _first(stream: Stream) -> tuple[Stream, Any]:
    """Start `stream`: `(stream, its first (item, events) pair or _END)`.

    A stream that raises before its first item is finished (nothing to close)."""
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        return stream, _END
    return stream, first


async def _counted(stream: Stream, breaker: CircuitBreakerLike, name: str) -> Stream:
    """The rest of the primary's stream, its failures counted by the breaker."""
    try:
        while True:
            try:
                pair = await stream.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                await breaker.record_failure(name, exc)
                raise
            yield pair
    finally:
        await stream.aclose()
