"""Behaviour shared by every handler base class: collecting events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .messages import Event

__all__ = ["EventSource", "declared_args", "keeps_events_list", "take_events"]


class EventSource:
    """Gives a handler an `events` list and an `emit` helper.

    No `__init__` is needed: the list is created on first use, so handler
    subclasses keep their own constructors free of boilerplate.
    """

    _anycqrs_events: list[Event] | None = None

    @property
    def events(self) -> Sequence[Event]:
        """Events produced by the last `handle` call, in emission order.

        The mediator takes (and clears) them right after `handle` returns.
        Assigning a list (`self.events = []`, the python-cqrs idiom) works too.
        """
        events = self._anycqrs_events
        return events if events is not None else ()

    @events.setter
    def events(self, value: list[Event]) -> None:
        self._anycqrs_events = value

    def emit(self, *events: Event) -> None:
        """Record `events` to be dispatched after `handle` returns."""
        current = self._anycqrs_events
        if current is None:
            self._anycqrs_events = list(events)
        else:
            current.extend(events)


def keeps_events_list(handler_type: type) -> bool:
    """Whether `handler_type` keeps `EventSource`'s own `events`, so
    hot paths may read (and clear) `handler._anycqrs_events` directly instead
    of calling `take_events`."""
    return getattr(handler_type, "events", None) is EventSource.events


def take_events(handler: Any) -> Sequence[Event]:
    """Take a handler's events, leaving its list empty (safe for singletons)."""
    events = handler.events
    if not events:
        return ()
    taken = tuple(events)
    if isinstance(events, list):
        events.clear()
    return taken


def declared_args(handler_type: type, base: type) -> tuple[Any, ...]:
    """The type arguments `handler_type` gave `base` (`()` if none).

    `class H(RequestHandler[CreateUser, UserCreated])` gives
    `(CreateUser, UserCreated)`.
    """
    from typing import get_args, get_origin

    for klass in handler_type.__mro__:
        for orig in klass.__dict__.get("__orig_bases__", ()):
            origin = get_origin(orig)
            if isinstance(origin, type) and issubclass(origin, base):
                return get_args(orig)
    return ()
