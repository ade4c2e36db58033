"""`bootstrap()` builds an `anycqrs.EventMediator`.

Example:
    ```python
    def bind_events(events: anycqrs.EventMap) -> None:
        events.bind(anycqrs.NotificationEvent[OrderPaid], ShipOrder)

    mediator = anycqrs.events.bootstrap.bootstrap(events_mapper=bind_events)
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import _defaults
from .._bootstrap import Mapper, apply_mapper, run_startup
from ..brokers import MessageBroker
from ..container import as_container
from ..middlewares import Middleware
from ._dispatcher import Guard
from ._map import EventMap
from ._mediator import EventMediator

__all__ = ["bootstrap"]


def bootstrap(
    *,
    di_container: Any = None,
    message_broker: MessageBroker | None = None,
    middlewares: Iterable[Middleware] | None = None,
    events_mapper: Mapper[EventMap] | None = None,
    on_startup: Iterable[Callable[[], object]] | None = None,
    max_concurrent_event_handlers: int = _defaults.MAX_CONCURRENT_EVENT_HANDLERS,
    concurrent_event_handle_enable: bool = _defaults.CONCURRENT_EVENT_HANDLE_ENABLE,
    inbox: Guard | None = None,
    tracer_provider: Any = None,
) -> EventMediator:
    """Build an `anycqrs.EventMediator`.

    Args:
        di_container: a `lagom.Container`, a `dishka.AsyncContainer`, a
            `di.Container`, a dependency-injector container (each wrapped in
            its adapter, detected by type) or any `anycqrs.Container`
            (default: a new lagom container); a `ScopedContainer` runs every
            handler in a scope of its own (see `anycqrs.container`).
        message_broker: where follow-up notification events go (default: a new
            `anycqrs.brokers.InMemoryMessageBroker`).
        middlewares: wrap every handler call, outermost first (default: none).
        events_mapper: a callable that binds events on the given `EventMap`
            (or an `EventMap` itself).
        on_startup: callables run once, before the mediator is built.
        max_concurrent_event_handlers: bound of parallel dispatch (default 10).
        concurrent_event_handle_enable: run handlers in parallel (default `False`).
        inbox: an `anycqrs.inbox` store guarding every notification-event
            handler: exactly-once effects in the handler's own transaction
            (default: none, at-least-once).
        tracer_provider: an OpenTelemetry `TracerProvider` (default: the
            global one, read now; none set, or OpenTelemetry absent: no
            spans). See the Observability page.
    """
    run_startup(on_startup)
    return EventMediator(
        apply_mapper(EventMap, events_mapper),
        container=as_container(di_container),
        message_broker=message_broker,
        middlewares=middlewares or (),
        max_concurrent_event_handlers=max_concurrent_event_handlers,
        concurrent_event_handle_enable=concurrent_event_handle_enable,
        inbox=inbox,
        tracer_provider=tracer_provider,
    )
