from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .. import _defaults
from ..brokers import InMemoryMessageBroker, MessageBroker
from ..container import Container, as_container
from ..messages import Event
from ..middlewares import Middleware, MiddlewareChain
from ..observability import _tracing
from ._dispatcher import EventDispatcher, Guard
from ._map import EventMap
from ._sender import ConsumedSender, consumed_sender


class EventMediator:
    """Delivers events to the handlers bound in an `EventMap`.

    Use it for events arriving from outside the process (a Kafka or RabbitMQ
    consumer feeds one) or raised by your own code. `send` runs the event's
    handlers and their follow-ups; follow-up notification events are
    published to the broker, the event passed to `send` itself is not (it
    usually came *from* the broker).

    Middlewares wrap each handler call (the message is the event).

    With an `inbox` (an `anycqrs.inbox` store) every handler of a
    notification event runs at most once per `event_id` to completion: in
    the inbox's transaction, skipped when that handler already handled the
    event (see the "Inbox and exactly-once" docs page).
    Tracing: with an OpenTelemetry `tracer_provider` (default: the global
    one, read when the mediator is built; none set: no spans), each handler
    call runs in a `handle <Event>` span.

    Example:
        ```python
        mediator = anycqrs.events.bootstrap.bootstrap(events_mapper=bind_events)
        await mediator.send(NotificationEvent(payload=OrderPaid(order_id=1)))
        ```
    """

    __slots__ = ("_dispatcher",)

    def __init__(
        self,
        event_map: EventMap,
        *,
        container: Any = None,
        message_broker: MessageBroker | None = None,
        middlewares: Iterable[Middleware] = (),
        max_concurrent_event_handlers: int = _defaults.MAX_CONCURRENT_EVENT_HANDLERS,
        concurrent_event_handle_enable: bool = _defaults.CONCURRENT_EVENT_HANDLE_ENABLE,
        inbox: Guard | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self._dispatcher = EventDispatcher(
            event_map,
            as_container(container),
            message_broker if message_broker is not None else InMemoryMessageBroker(),
            middlewares
            if isinstance(middlewares, MiddlewareChain)
            else MiddlewareChain(middlewares),
            concurrent=concurrent_event_handle_enable,
            max_concurrent=max_concurrent_event_handlers,
            guard=inbox,
            tracer=_tracing.tracer(tracer_provider),
        )

    @classmethod
    def _from_dispatcher(cls, dispatcher: EventDispatcher) -> EventMediator:
        mediator = cls.__new__(cls)
        mediator._dispatcher = dispatcher
        return mediator

    @property
    def event_map(self) -> EventMap:
        """The bindings (brokers route incoming messages with it)."""
        return self._dispatcher.event_map

    @property
    def inbox(self) -> Guard | None:
        """The inbox guarding the handlers, if any."""
        return self._dispatcher.guard

    @property
    def requires_event_ids(self) -> bool:
        """Whether consumed messages must carry an ``event_id`` (an inbox is
        set): consumers dead-letter one without as poison."""
        return self._dispatcher.guard is not None

    def chunk(self) -> AbstractAsyncContextManager[None] | None:
        """The context a consumer runs one lane chunk in: the inbox's chunk
        transaction when the inbox batches (``batch=True``), else `None`
        (see `anycqrs.consumers.ChunkSink`)."""
        return self._dispatcher.chunk()

    @property
    def message_broker(self) -> MessageBroker:
        """Where follow-up notification events are published."""
        return self._dispatcher.message_broker

    def with_container(self, container: Container | Any) -> EventMediator:
        """A mediator sharing this one's bindings and settings, resolving
        handlers from `container` (for request-scoped dependencies)."""
        return self._from_dispatcher(self._dispatcher.with_container(as_container(container)))

    async def send(self, event: Event) -> None:
        """Run the handlers bound to `event` and everything they emit.

        Raises:
            Exception: a handler's exception, unchanged.
            EventDispatchError: several parallel handlers failed at once.
        """
        await self._dispatcher.dispatch_one(event, publish=False)

    def sender(self) -> Callable[[Any], Awaitable[None]]:
        """A function with `send`'s semantics for a consumer's hot loop (see
        `anycqrs.consumers.Lanes`): one call per event, a lone plain handler
        called directly (no `send` / dispatch frames in between).

        Example:
            ```python
            send = mediator.sender()
            await send(NotificationEvent(payload=OrderPaid(order_id=1)))
            ```
        """
        return consumed_sender(self._dispatcher).send

    def sender_parts(self) -> ConsumedSender:
        """`sender()` in parts, for `anycqrs.consumers.Lanes`: a lone plain
        handler is resolved by `resolve` and awaited by the lanes themselves
        (no `send` coroutine per event; see `ConsumedSender`)."""
        return consumed_sender(self._dispatcher)

    async def send_many(self, events: Iterable[Event]) -> None:
        """Like `send` for several events, dispatched as one generation."""
        await self._dispatcher.dispatch(tuple(events), publish=False)
