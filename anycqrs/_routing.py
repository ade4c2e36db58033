"""What a map binding compiles to.

A binding is either a handler class (the fast, common case, inlined by the
mediators) or a :class:`Route`: a composite such as a chain of responsibility
or a fallback, which builds its own endpoint from a resolver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, runtime_checkable

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
