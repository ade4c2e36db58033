from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable
from uuid import UUID, uuid4

import attrs

from ..messages import NotificationEvent
from ..serialization import to_dict


@attrs.frozen(kw_only=True)
class Message:
    """What goes on the wire for one notification event.

    Build it from an event with :meth:`from_event`.
    """

    message_name: str
    """The event name used for routing (``NotificationEvent.event_name``)."""
    topic: str
    """Destination topic / routing key."""
    payload: Any
    """The plain data that is sent: ``to_dict(event)``."""
    message_id: UUID = attrs.field(factory=uuid4)
    """Unique id (the event's ``event_id``)."""
    key: str | None = None
    """Partition / ordering key."""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    """Transport headers (the event's own)."""

    @classmethod
    def from_event(cls, event: NotificationEvent[Any]) -> Message:
        """The message that carries ``event``."""
        return cls(
            message_name=event.event_name,
            message_id=event.event_id,
            topic=event.topic,
            payload=to_dict(event),
            key=event.key,
            headers=dict(event.headers),
        )


@runtime_checkable
class MessageBroker(Protocol):
    """Anything that can publish a :class:`Message`.

    ``send_message`` returns once the broker accepted the message (or raises).
    Brokers that can publish batches also offer ``send_many``; callers use it
    when present (see :func:`publish_many`).
    """

    async def send_message(self, message: Message, /) -> None:
        """Publish one message."""
        ...


async def publish_many(broker: MessageBroker, messages: Sequence[Message]) -> None:
    """Publish ``messages`` in order, as one batch when the broker supports it."""
    send_many = getattr(broker, "send_many", None)
    if send_many is not None:
        await send_many(messages)
        return
    for message in messages:
        await broker.send_message(message)
