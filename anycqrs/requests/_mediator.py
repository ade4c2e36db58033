from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from .. import _defaults
from .._handlers import EventSource, take_events
from .._routing import Resolver
from ..brokers import InMemoryMessageBroker, MessageBroker
from ..container import Container, as_container, factory_for, is_sync
from ..errors import RequestHandlerDoesNotExist
from ..events._dispatcher import EventDispatcher
from ..events._map import EventMap
from ..messages import Event, Request
from ..middlewares import Middleware, MiddlewareChain
from ._map import RequestMap

R = TypeVar("R")

Pipeline = Callable[[Any], Awaitable[Any]]


class RequestMediator:
    """Sends commands and queries to their handlers.

    For each ``send``: the middlewares run (outermost first), the handler is
    resolved from the container and runs, the events it emitted are dispatched
    (domain events to their handlers, notification events to their handlers
    and to the broker), then the response travels back out through the
    middlewares.

    Errors: the handler's exception reaches the caller unchanged and its events
    are not dispatched; if event dispatch fails after the handler succeeded,
    :class:`~anycqrs.errors.EventDispatchError` is raised with the handler's
    response in ``.response``.

    Build one with :func:`anycqrs.requests.bootstrap.bootstrap`.
    """

    __slots__ = ("_chain", "_container", "_events", "_pipelines", "_requests")

    def __init__(
        self,
        request_map: RequestMap,
        *,
        event_map: EventMap | None = None,
        container: Any = None,
        message_broker: MessageBroker | None = None,
        middlewares: Iterable[Middleware] = (),
        max_concurrent_event_handlers: int = _defaults.MAX_CONCURRENT_EVENT_HANDLERS,
        concurrent_event_handle_enable: bool = _defaults.CONCURRENT_EVENT_HANDLE_ENABLE,
    ) -> None:
        self._requests = request_map
        self._container = as_container(container)
        self._chain = (
            middlewares
            if isinstance(middlewares, MiddlewareChain)
            else MiddlewareChain(middlewares)
        )
        self._events = EventDispatcher(
            event_map if event_map is not None else EventMap(),
            self._container,
            message_broker if message_broker is not None else InMemoryMessageBroker(),
            MiddlewareChain(),
            concurrent=concurrent_event_handle_enable,
            max_concurrent=max_concurrent_event_handlers,
        )
        self._pipelines: dict[type, Pipeline] = {}

    @property
    def request_map(self) -> RequestMap:
        """The request bindings."""
        return self._requests

    @property
    def event_dispatcher(self) -> EventDispatcher:
        """The dispatcher of the events handlers emit."""
        return self._events

    @property
    def message_broker(self) -> MessageBroker:
        """Where notification events are published."""
        return self._events.message_broker

    def with_container(self, container: Container | Any) -> RequestMediator:
        """A mediator sharing this one's bindings and settings but resolving
        handlers from ``container`` (e.g. a per-request child container)."""
        clone = type(self).__new__(type(self))
        clone._requests = self._requests
        clone._container = as_container(container)
        clone._chain = self._chain
        clone._events = self._events.with_container(clone._container)
        clone._pipelines = {}
        return clone

    async def send(self, request: Request[R]) -> R:
        """Handle ``request`` and return its handler's response.

        Raises:
            RequestHandlerDoesNotExist: nothing is bound to the request's type.
            EventDispatchError: the handler succeeded, its events failed.
            Exception: whatever the handler raised, unchanged.
        """
        pipeline = self._pipelines.get(type(request))
        if pipeline is None:
            pipeline = self._pipeline(type(request))
        result: R = await pipeline(request)
        return result

    def _pipeline(self, request_type: type) -> Pipeline:
        binding = self._requests.get(request_type)
        if binding is None:
            raise RequestHandlerDoesNotExist(request_type)
        endpoint = self._endpoint(binding)
        pipeline = self._chain.wrap(endpoint) if len(self._chain) else endpoint
        self._pipelines[request_type] = pipeline
        return pipeline

    def _endpoint(self, binding: Any) -> Pipeline:
        dispatch_after = self._events.dispatch_after
        if not isinstance(binding, type):
            inner: Callable[[Any], Awaitable[tuple[Any, Sequence[Event]]]] = binding.build(
                Resolver(self._container)
            )

            async def composite(request: Any) -> Any:
                response, events = await inner(request)
                if events:
                    await dispatch_after(response, events)
                return response

            return composite

        make = factory_for(self._container, binding)
        if is_sync(self._container) and getattr(binding, "events", None) is EventSource.events:

            async def fast(request: Any) -> Any:
                handler = make()
                response = await handler.handle(request)
                events = handler._anycqrs_events
                if events:
                    taken = tuple(events)
                    events.clear()
                    await dispatch_after(response, taken)
                return response

            return fast

        if is_sync(self._container):

            async def endpoint(request: Any) -> Any:
                handler = make()
                response = await handler.handle(request)
                if handler.events:
                    await dispatch_after(response, take_events(handler))
                return response

        else:

            async def endpoint(request: Any) -> Any:
                handler = await make()
                response = await handler.handle(request)
                if handler.events:
                    await dispatch_after(response, take_events(handler))
                return response

        return endpoint

    async def _events_resolve(self, handler_type: type) -> Any:
        instance = factory_for(self._container, handler_type)()
        return instance if is_sync(self._container) else await instance
