"""What a map binding compiles to.

A binding is either a handler class (the common case, run through its
`HandlerEndpoint`) or a `Route`: a composite such as a chain of
responsibility or a fallback, which builds its own endpoint from the
mediator's `Endpoints`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, get_args, get_origin, runtime_checkable

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


def describe(obj: Any) -> str:
    """How binding errors name `obj`: a class by its qualified name
    (`NotificationEvent[OrderPaid]` for an alias), a route by its short
    repr, anything else as `a <type> instance` (never `<class '...'>` nor an
    object repr)."""
    if isinstance(obj, type):
        return obj.__qualname__
    if get_origin(obj) is not None:
        args = ", ".join(describe(arg) for arg in get_args(obj))
        return f"{describe(get_origin(obj))}[{args}]"
    if isinstance(obj, Route):
        return repr(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(describe(item) for item in obj) + "]"
    if type(obj).__module__ == "typing":  # Any, a TypeVar...: their repr reads well
        return repr(obj)
    if inspect.isfunction(obj):
        return f"function {obj.__qualname__}"
    name = getattr(type(obj), "__qualname__", "object")
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name} instance"
