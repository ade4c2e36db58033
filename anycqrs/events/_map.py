from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, get_args, get_origin

from .._handlers import EventSource, declared_args, kind_of
from .._routing import Route, describe
from ..errors import BindingError, UnknownEventName
from ..messages import Event, NotificationEvent, event_name_of
from ._handler import EventHandler


def event_key(event_type: Any) -> Any:
    """The routing key of an event type (`NotificationEvent[P]` -> payload-based)."""
    if get_origin(event_type) is NotificationEvent:
        (payload_type,) = get_args(event_type)
        return (NotificationEvent, payload_type)
    return event_type


def check_event_handler(owner: str, handler: Any) -> None:
    """Raise `BindingError` unless `handler` is an event handler class: an
    `EventHandler` subclass, or a plain class with `async def handle` (not a
    request handler, a chain link or a saga step)."""
    if not (isinstance(handler, type) and callable(getattr(handler, "handle", None))):
        raise BindingError(
            f"{owner}{describe(handler)} is not an event handler: bind a class with "
            "`async def handle(self, event)` (an anycqrs.EventHandler subclass)"
        )
    if issubclass(handler, EventSource) and not issubclass(handler, EventHandler):
        raise BindingError(
            f"{owner}{handler.__qualname__} is a {kind_of(handler)}, not an EventHandler: "
            "bind it in a RequestMap, or bind an anycqrs.EventHandler here"
        )


class EventMap:
    """Which handlers react to which events.

    Several handlers may be bound to one event; they run in bind order (or
    concurrently, when parallel dispatch is enabled). Binding the same handler
    twice to one event is rejected.

    Example:
        ```python
        events = EventMap()
        events.bind(UserCreated, SendWelcomeMail)
        events.bind(NotificationEvent[OrderPaid], ShipOrder)
        ```
    """

    __slots__ = ("_by_name", "_handlers", "_types", "_version")

    def __init__(self) -> None:
        self._handlers: dict[Any, tuple[Any, ...]] = {}
        self._version = 0
        """Counts the `bind` calls (a cached lookup of an older count is stale)."""
        self._types: dict[Any, Any] = {}
        self._by_name: dict[str, Any] = {}

    def bind(self, event_type: Any, handler: Any) -> None:
        """Bind `handler` (an `EventHandler` class or a route such as
        `EventHandlerFallback`) to `event_type`.

        `event_type` is a `DomainEvent` subclass, a `NotificationEvent`
        subclass, or `NotificationEvent[Payload]`.

        Raises:
            BindingError: the event type or handler is invalid, or the pair is
                already bound.
        """
        key = event_key(event_type)
        if get_origin(event_type) is NotificationEvent:
            (payload_type,) = get_args(event_type)
            if not isinstance(payload_type, type):
                raise BindingError(f"{describe(event_type)}: the payload must be a class")
        elif not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise BindingError(
                f"{describe(event_type)} is not an event type: use a DomainEvent subclass or "
                "NotificationEvent[Payload]"
            )
        self._check_handler(event_type, handler)
        bound = self._handlers.get(key, ())
        if handler in bound:
            raise BindingError(f"{describe(handler)} is already bound to {describe(event_type)}")
        if isinstance(key, tuple):
            name = event_name_of(key[1])
            other = self._by_name.get(name)
            if other is not None and other != event_type:
                raise BindingError(
                    f"{describe(event_type)} and {describe(other)} share the event name "
                    f"{name!r}; set __event_name__ on one payload class"
                )
            self._by_name[name] = event_type
        self._handlers[key] = (*bound, handler)
        self._version += 1
        self._types[key] = event_type

    @staticmethod
    def _check_handler(event_type: Any, handler: Any) -> None:
        if isinstance(handler, Route):
            handler.validate(event_type)
            return
        check_event_handler(f"{describe(event_type)}: ", handler)
        declared = declared_args(handler, EventHandler)
        if declared:
            expected = declared[0]
            if not _event_fits(event_type, expected):
                raise BindingError(
                    f"{handler.__qualname__} handles {describe(expected)}, "
                    f"not {describe(event_type)}"
                )

    @property
    def bound(self) -> Mapping[Any, tuple[Any, ...]]:
        """Handlers by routing key, for dispatchers (do not mutate: use `bind`)."""
        return self._handlers

    def lookup(self, event: Any) -> Sequence[Any]:
        """The handlers bound to `event`'s type, in bind order."""
        cls = type(event)
        if cls is NotificationEvent:
            return self._handlers.get((cls, type(event.payload)), ())
        return self._handlers.get(cls, ())

    def handlers(self, event_type: Any) -> Sequence[Any]:
        """The handlers bound to `event_type`, in bind order."""
        return self._handlers.get(event_key(event_type), ())

    def notification_type(self, event_name: str) -> Any:
        """The `NotificationEvent[P]` bound under `event_name` (for brokers).

        Raises:
            UnknownEventName: no binding has that name.
        """
        try:
            return self._by_name[event_name]
        except KeyError:
            raise UnknownEventName(event_name) from None

    @property
    def event_names(self) -> frozenset[str]:
        """Every routable notification event name."""
        return frozenset(self._by_name)

    def items(self) -> Iterator[tuple[Any, Sequence[Any]]]:
        """`(event_type, handlers)` pairs, in bind order."""
        for key, handlers in self._handlers.items():
            yield self._types[key], handlers

    def __contains__(self, event_type: object) -> bool:
        return event_key(event_type) in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{describe(t)}: [{', '.join(describe(h) for h in hs)}]" for t, hs in self.items()
        )
        return f"EventMap({{{inner}}})"


def _event_fits(event_type: Any, expected: Any) -> bool:
    if expected is Any or expected in (Event, NotificationEvent):
        return True
    if get_origin(expected) is NotificationEvent:
        if get_origin(event_type) is not NotificationEvent:
            return isinstance(event_type, type) and issubclass(event_type, NotificationEvent)
        (want,), (have,) = get_args(expected), get_args(event_type)
        if want is Any or not isinstance(want, type):
            return True
        return isinstance(have, type) and issubclass(have, want)
    if isinstance(expected, type):
        return isinstance(event_type, type) and issubclass(event_type, expected)
    return True  # a TypeVar or something we can't check: accept
