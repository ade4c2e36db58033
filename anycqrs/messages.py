"""Message base classes: requests, responses and events.

Messages are plain attrs classes (or dataclasses) that derive from these bases:

```python
@attrs.frozen
class CreateUser(anycqrs.Request["UserCreated"]):
    name: str

@attrs.frozen
class UserCreated(anycqrs.Response):
    user_id: UUID
```

The response type parameter of [`Request`][anycqrs.Request] is optional; when given it lets
the type checker infer what [`RequestMediator.send`][anycqrs.RequestMediator.send] returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Generic
from uuid import UUID, uuid4

import attrs
from typing_extensions import TypeVar

__all__ = [
    "DomainEvent",
    "Event",
    "NotificationEvent",
    "Request",
    "Response",
    "event_name_of",
]

ResT = TypeVar("ResT", default=Any, covariant=True)
PayloadT = TypeVar("PayloadT", default=Any)


class Request(Generic[ResT]):
    """Base class of commands and queries.

    ``Request[Result]`` names the response type for the type checker; plain
    ``Request`` means "any response". Subclasses are usually ``@attrs.frozen``.
    """

    __slots__ = ()


class Response:
    """Base class of request results."""

    __slots__ = ()


class Event:
    """Common base of [`DomainEvent`][anycqrs.DomainEvent] and
    [`NotificationEvent`][anycqrs.NotificationEvent]."""

    __slots__ = ()


class DomainEvent(Event):
    """An in-process event: handled by the handlers bound in an ``EventMap``,
    never sent to a message broker."""

    __slots__ = ()


def event_name_of(payload_type: type) -> str:
    """The wire name of a payload class: its own ``__event_name__`` if it sets
    one, else its ``__name__``."""
    name = payload_type.__dict__.get("__event_name__")
    return name if isinstance(name, str) else payload_type.__name__


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@attrs.frozen(kw_only=True)
class NotificationEvent(Event, Generic[PayloadT]):
    """An integration event: delivered to its bound handlers *and* published
    to the message broker.

    ``NotificationEvent[OrderPaid]`` bound in an ``EventMap`` receives every
    notification whose payload is an ``OrderPaid``, whether sent in-process or
    consumed from a broker (routed there by `event_name`).

    Events are hashable by `event_id` alone (as in python-cqrs), so a
    consumer can deduplicate redeliveries in a set; equality still compares
    every field, which is consistent: equal events have equal ids.

    Example:
        ```python
        event = NotificationEvent(payload=OrderPaid(order_id=1), topic="orders", key="1")
        assert event.event_name == "OrderPaid"
        ```
    """

    payload: PayloadT = attrs.field(hash=False)
    """The event's data (an attrs class or dataclass)."""
    topic: str = attrs.field(default="", hash=False)
    """Destination topic (Kafka) or routing key (RabbitMQ)."""
    event_name: str = attrs.field(default="", hash=False)
    """Wire name used for routing; empty (the default) means the payload class's
    name (`event_name_of`)."""
    key: str | None = attrs.field(default=None, hash=False)
    """Partition / ordering key: events with one key stay in order."""
    headers: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    """Extra transport headers."""
    event_id: UUID = attrs.field(factory=uuid4)
    """Unique id of this event (deduplication key; the event's hash)."""
    event_timestamp: datetime = attrs.field(factory=_utcnow, hash=False)
    """When the event was created, timezone-aware (a naive value is taken as UTC)."""

    def __attrs_post_init__(self) -> None:
        # Defaults that depend on other fields, and the naive-means-UTC rule, live here
        # rather than in a `takes_self` factory and a converter: msgspec (the fast wire
        # codec) builds attrs classes without `__init__` but runs this hook.
        if not self.event_name:
            object.__setattr__(self, "event_name", event_name_of(type(self.payload)))
        timestamp = self.event_timestamp
        if timestamp.tzinfo is None:
            object.__setattr__(self, "event_timestamp", timestamp.replace(tzinfo=timezone.utc))
