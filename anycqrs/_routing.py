"""What a map binding compiles to.

A binding is either a handler class (the common case, run through its
`HandlerEndpoint`) or a `Route`: a composite such as a chain of
responsibility or a fallback, which builds its own endpoint from the
mediator's `Endpoints`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .messages import Event

if TYPE_CHECKING:
    from ._endpoint import Endpoints

RequestEndpoint = Callable[[Any], Awaitable[tuple[Any, Sequence[Event]]]]
"""Handles a request; returns `(response, events produced)`."""

EventEndpoint = Callable[[Any], Awaitable[tuple[Any, Sequence[Event]]]]
"""Handles an event; returns `(None, follow-up events produced)`."""


@runtime_checkable
class Route(Protocol):
    """A composite binding (chain of responsibility, fallback...).

    Attributes:
        streaming: whether `build` returns a stream source
            (`request -> async iterator of (item, events)`) rather than a
            request or event endpoint (`message -> (result, events)`).
    """

    streaming: bool

    def handler_types(self) -> Sequence[type]:
        """Every handler class this route may run (for validation and diagrams)."""
        ...

    def validate(self, message_type: Any) -> None:
        """Raise `anycqrs.errors.BindingError` if the route can't handle
        `message_type`. Called by `bind`."""
        ...

    def build(self, endpoints: Endpoints) -> Callable[[Any], Any]:
        """The endpoint (or stream source) running this route, its handlers
        built through `endpoints`."""
        ...
