"""Streaming handler classes as route sources (a fallback's primary and
fallback): `stream_handler` yields `(item, events)` pairs, in a scope of
their own when the container is scoped."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from .._containers._scope import leave
from .._endpoint import HandlerEndpoint, resolution_failed
from ..messages import Event

TRAILER: Any = object()
"""An item that carries only the trailing events of a stream (never delivered)."""


def stream_handler(
    endpoint: HandlerEndpoint, request: Any
) -> AsyncGenerator[tuple[Any, Sequence[Event]], None]:
    """Run a streaming handler class as a route source: yields `(item, events)`.

    With a scoped container the handler is built in a scope of its own that
    spans its stream (closed with its error, or none when it finished or the
    consumer left), as `RequestStream` does for a plain binding."""
    if endpoint.scope is not None:
        return _scoped_stream(endpoint, request)
    return _plain_stream(endpoint, request)


async def _plain_stream(
    endpoint: HandlerEndpoint, request: Any
) -> AsyncGenerator[tuple[Any, Sequence[Event]], None]:
    handler = await endpoint.resolve(request)
    take = endpoint.take_events
    agen = handler.handle(request)
    try:
        async for item in agen:
            yield item, take(handler)
        trailing = take(handler)
        if trailing:
            yield TRAILER, trailing
    finally:
        await agen.aclose()


async def _scoped_stream(
    endpoint: HandlerEndpoint, request: Any
) -> AsyncGenerator[tuple[Any, Sequence[Event]], None]:
    assert endpoint.scope is not None
    manager = endpoint.scope.scope()
    resolver = await manager.__aenter__()
    outcome: BaseException | None = None
    try:
        try:
            handler: Any = await resolver.resolve(endpoint.handler_type)
        except Exception as error:
            resolution_failed(endpoint.handler_type, request, error)
            raise
        take = endpoint.take_events
        agen = handler.handle(request)
        try:
            async for item in agen:
                yield item, take(handler)
            trailing = take(handler)
            if trailing:
                yield TRAILER, trailing
        finally:
            await agen.aclose()
    except GeneratorExit:  # the consumer left: not a failure
        raise
    except BaseException as error:
        outcome = error
        raise
    finally:
        await leave(manager, outcome)
