"""Behaviour shared by every handler base class: collecting events.

Taking a handler's events (what every mediator and the saga steps do after a
call) is one mechanism, `take_events`: it returns the events emitted since the
last take and leaves the handler with none, so each event is dispatched once,
singletons included. How it clears is decided once per handler class:

* the standard `EventSource` list (`emit`, or `self.events = [...]`): the
  list is emptied (`take_list`, which hot paths inline);
* a handler with `clear_events()` (the `ClearsEvents` protocol, python-cqrs's
  idiom, where `events` may return a copy): its `clear_events()` is called;
* any other `events`: a list it returns is emptied in place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .messages import Event

__all__ = [
    "ClearsEvents",
    "EventSource",
    "declared_args",
    "events_taker",
    "kind_of",
    "keeps_events_list",
    "take_events",
    "take_list",
]

_NONE: tuple[Event, ...] = ()


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


@runtime_checkable
class ClearsEvents(Protocol):
    """A handler that empties its own events: python-cqrs's idiom, where the
    `events` property may return a copy and `clear_events()` forgets them.

    anycqrs calls `clear_events()` right after reading `events`.
    """

    def clear_events(self) -> None:
        """Forget the events produced so far."""
        ...


def take_list(handler: Any) -> Sequence[Event]:
    """Take the events of a handler that keeps the standard `EventSource`
    list: a tuple, the list left empty."""
    events = handler._anycqrs_events
    if not events:
        return _NONE
    taken = tuple(events)
    events.clear()
    return taken


def _take_and_clear(handler: Any) -> Sequence[Event]:
    events = handler.events
    if not events:
        return _NONE
    taken = tuple(events)
    handler.clear_events()
    return taken


def _take_in_place(handler: Any) -> Sequence[Event]:
    events = handler.events
    if not events:
        return _NONE
    taken = tuple(events)
    if isinstance(events, list):
        events.clear()
    return taken


def events_taker(handler_type: type) -> Callable[[Any], Sequence[Event]]:
    """How to take the events of a `handler_type` instance (see the module
    docs): decided from the class, once."""
    if keeps_events_list(handler_type):
        return take_list
    if isinstance(handler_type, type) and issubclass(handler_type, ClearsEvents):
        return _take_and_clear
    return _take_in_place


@functools.lru_cache(maxsize=1024)
def _taker_of(handler_type: type) -> Callable[[Any], Sequence[Event]]:
    # the protocol check costs microseconds, the cached answer ~0.1 us
    return events_taker(handler_type)


def take_events(handler: Any) -> Sequence[Event]:
    """Take a handler's events, leaving it with none (safe for singletons,
    whatever idiom the handler uses: see the module docs)."""
    handler_type: type = type(handler)
    return _taker_of(handler_type)(handler)


def kind_of(handler_type: type) -> str:
    """The anycqrs base class `handler_type` derives from, by name
    (`"RequestHandler"`, `"EventHandler"`...), for error messages
    (`"handler of another kind"` when it derives from none)."""
    for klass in handler_type.__mro__[1:]:
        if klass is not EventSource and klass.__module__.startswith("anycqrs."):
            return klass.__qualname__
    return "handler of another kind"


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
