"""`bootstrap()` builds a `anycqrs.RequestMediator`;
`bootstrap_streaming()` a `anycqrs.StreamingRequestMediator`.

Example:
    ```python
    def commands(requests: anycqrs.RequestMap) -> None:
        requests.bind(CreateUser, CreateUserHandler)

    def domain_events(events: anycqrs.EventMap) -> None:
        events.bind(UserCreated, SendWelcomeMail)

    mediator = anycqrs.requests.bootstrap.bootstrap(
        di_container=lagom.Container(),
        commands_mapper=commands,
        domain_events_mapper=domain_events,
    )
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import _defaults
from .._bootstrap import Mapper, apply_mapper, run_startup
from ..brokers import MessageBroker
from ..container import as_container
from ..events._map import EventMap
from ..middlewares import Middleware
from ._map import RequestMap
from ._mediator import RequestMediator
from ._streaming import StreamingRequestMediator

__all__ = ["bootstrap", "bootstrap_streaming"]


def bootstrap(
    *,
    di_container: Any = None,
    message_broker: MessageBroker | None = None,
    middlewares: Iterable[Middleware] | None = None,
    commands_mapper: Mapper[RequestMap] | None = None,
    queries_mapper: Mapper[RequestMap] | None = None,
    domain_events_mapper: Mapper[EventMap] | None = None,
    on_startup: Iterable[Callable[[], object]] | None = None,
    max_concurrent_event_handlers: int = _defaults.MAX_CONCURRENT_EVENT_HANDLERS,
    concurrent_event_handle_enable: bool = _defaults.CONCURRENT_EVENT_HANDLE_ENABLE,
    tracer_provider: Any = None,
) -> RequestMediator:
    """Build a `anycqrs.RequestMediator`.

    Args:
        di_container: a `lagom.Container`, a `dishka.AsyncContainer`, a
            `di.Container`, a dependency-injector container (each wrapped in
            its adapter, detected by type) or any `anycqrs.Container`
            (default: a new lagom container); a `ScopedContainer` runs every
            handler in a scope of its own (see `anycqrs.container`).
        message_broker: where notification events go (default: a new
            `anycqrs.brokers.InMemoryMessageBroker`).
        middlewares: wrap every `send`, outermost first (default: none).
        commands_mapper: binds commands on the given `RequestMap` (a callable,
            or a ready `RequestMap`).
        queries_mapper: the same for queries (merged into one map; binding a
            type in both raises).
        domain_events_mapper: binds the events handlers emit on an `EventMap`.
        on_startup: callables run once, before the mediator is built.
        max_concurrent_event_handlers: bound of parallel event dispatch (default 10).
        concurrent_event_handle_enable: dispatch events in parallel (default `False`).
        tracer_provider: an OpenTelemetry `TracerProvider` (default: the
            global one, read now; none set, or OpenTelemetry absent: no
            spans). See the Observability page.
    """
    run_startup(on_startup)
    return RequestMediator(
        apply_mapper(RequestMap, commands_mapper, queries_mapper),
        event_map=apply_mapper(EventMap, domain_events_mapper),
        container=as_container(di_container),
        message_broker=message_broker,
        middlewares=middlewares or (),
        max_concurrent_event_handlers=max_concurrent_event_handlers,
        concurrent_event_handle_enable=concurrent_event_handle_enable,
        tracer_provider=tracer_provider,
    )


def bootstrap_streaming(
    *,
    di_container: Any = None,
    message_broker: MessageBroker | None = None,
    middlewares: Iterable[Middleware] | None = None,
    commands_mapper: Mapper[RequestMap] | None = None,
    queries_mapper: Mapper[RequestMap] | None = None,
    domain_events_mapper: Mapper[EventMap] | None = None,
    on_startup: Iterable[Callable[[], object]] | None = None,
    max_concurrent_event_handlers: int = _defaults.MAX_CONCURRENT_EVENT_HANDLERS,
    concurrent_event_handle_enable: bool = _defaults.CONCURRENT_EVENT_HANDLE_ENABLE,
    tracer_provider: Any = None,
) -> StreamingRequestMediator:
    """Build a `anycqrs.StreamingRequestMediator`.

    The parameters and defaults are those of `bootstrap`; the mappers
    bind `anycqrs.StreamingRequestHandler` classes (or
    `StreamingRequestHandlerFallback`s), and `middlewares` wrap each
    streamed item (see `anycqrs.StreamingRequestMediator`).

    Example:
        ```python
        def queries(requests: anycqrs.RequestMap) -> None:
            requests.bind(ExportRows, ExportRowsHandler)

        mediator = bootstrap_streaming(queries_mapper=queries)
        async with mediator.stream(ExportRows(table="users")) as rows:
            async for row in rows:
                ...
        ```

    Raises:
        BindingError: a bound handler does not stream.
    """
    run_startup(on_startup)
    return StreamingRequestMediator(
        apply_mapper(RequestMap, commands_mapper, queries_mapper),
        event_map=apply_mapper(EventMap, domain_events_mapper),
        container=as_container(di_container),
        message_broker=message_broker,
        middlewares=middlewares or (),
        max_concurrent_event_handlers=max_concurrent_event_handlers,
        concurrent_event_handle_enable=concurrent_event_handle_enable,
        tracer_provider=tracer_provider,
    )
