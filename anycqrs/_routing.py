"""What a map binding compiles to.

A binding is either a handler class (the fast, common case, inlined by the
mediators) or a :class:`Route`: a composite such as a chain of responsibility
or a fallback, which builds its own endpoint from a resolver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .container import factory_for, is_sync
from .messages import Event

Resolve = Callable[[type], Awaitable[Any]]
"""``await resolve(HandlerType)`` builds a handler through the container."""

RequestEndpoint = Callable[[Any], Awaitable[tuple[Any, Sequence[Event]]]]
"""Handles a request; returns ``(response, events produced)``."""

EventEndpoint = Callable[[Any], Awaitable[Sequence[Event]]]
"""Handles an event; returns the follow-up events produced."""


@runtime_checkable
class Route(Protocol):
    """A composite binding (chain of responsibility, fallback...)."""

    def handler_types(self) -> Sequence[type]:
        """Every handler class this route may run (for validation and diagrams)."""
        ...

    def validate(self, message_type: Any) -> None:
        """Raise :class:`anycqrs.errors.BindingError` if the route can't handle
        ``message_type``. Called by ``bind``."""
        ...

    def build(self, resolve: Resolve) -> Callable[[Any], Awaitable[Any]]:
        """The endpoint running this route (a request or an event endpoint)."""
        ...


class Resolver:
    """The ``resolve`` the mediators give :meth:`Route.build`.

    ``await resolver(HandlerType)`` builds a handler through the container.
    Routes on hot paths may also ask for :meth:`factory`: a zero-argument
    callable building ``HandlerType`` synchronously (``None`` when the
    container is asynchronous). Factories are cached per type.
    """

    __slots__ = ("_container", "_factories", "_sync")

    def __init__(self, container: Any) -> None:
        self._container = container
        self._factories: dict[type, Callable[[], Any]] = {}
        self._sync = is_sync(container)

    def _make(self, handler_type: type) -> Callable[[], Any]:
        make = self._factories.get(handler_type)
        if make is None:
            make = self._factories[handler_type] = factory_for(self._container, handler_type)
        return make

    async def __call__(self, handler_type: type) -> Any:
        """Build a ``handler_type`` instance."""
        instance = self._make(handler_type)()
        return instance if self._sync else await instance

    def factory(self, handler_type: type) -> Callable[[], Any] | None:
        """A synchronous builder of ``handler_type``, or ``None`` if the
        container only resolves asynchronously."""
        return self._make(handler_type) if self._sync else None
