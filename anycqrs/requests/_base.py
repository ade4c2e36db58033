from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from .. import _defaults
from .._endpoint import Endpoints
from ..brokers import InMemoryMessageBroker, MessageBroker
from ..container import Container, as_container
from ..events._dispatcher import EventDispatcher
from ..events._map import EventMap
from ..middlewares import Middleware, MiddlewareChain
from ..observability import _tracing
from ._map import RequestMap

M = TypeVar("M", bound="RequestMediatorBase")


class RequestMediatorBase:
    """What the request and streaming mediators share: bindings, container,
    middleware chain, the handler endpoints and the dispatcher of the events
    handlers emit."""

    __slots__ = ("_chain", "_container", "_events", "_handlers", "_requests", "_tracer")

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
        tracer_provider: Any = None,
    ) -> None:
        self._validate(request_map)
        self._tracer = _tracing.tracer(tracer_provider)
        self._requests = request_map
        self._container = as_container(container)
        self._handlers = Endpoints(self._container)  # the chain wraps the whole pipeline
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
            tracer=self._tracer,
        )
        self._setup(None)

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

    def with_container(self: M, container: Container | Any) -> M:
        """A mediator sharing this one's bindings and settings but resolving
        handlers from `container` (e.g. a per-request child container)."""
        clone = type(self).__new__(type(self))
        clone._requests = self._requests
        clone._container = as_container(container)
        clone._handlers = self._handlers.with_container(clone._container)
        clone._chain = self._chain
        clone._tracer = self._tracer
        clone._events = self._events.with_container(clone._container)
        clone._setup(self)
        return clone

    def _validate(self, request_map: RequestMap) -> None:
        """Reject, at construction, bindings this kind of mediator cannot run."""

    def _setup(self, original: Any) -> None:
        """Set up this mediator's own state (caches): when constructed
        (`original` is `None`) and for a clone of `original`."""
        raise NotImplementedError
