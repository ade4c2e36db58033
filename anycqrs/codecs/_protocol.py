"""The message codec boundary: `MessageCodec` and the default `JsonCodec`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import DeserializationError, SerializationError
from ..messages import NotificationEvent
from ..serialization import dumps

if TYPE_CHECKING:
    from ..brokers import Message
    from ..consumers import EventDecoder
    from ..consumers._protocols import EventTypes

__all__ = ["JSON", "JsonCodec", "MessageCodec", "payload_type"]


@runtime_checkable
class MessageCodec(Protocol):
    """Turns a broker `Message` into wire bytes and wire bytes back into the
    `NotificationEvent[P]` bound under its event name.

    Every broker (Kafka, RabbitMQ, in memory) takes one (`codec=...`, chosen
    once at construction; `JsonCodec` when none is given): producers call
    `encode`, consumers decode through the `anycqrs.consumers.EventDecoder`,
    which calls `decode`. Built in: `JsonCodec` (the default),
    `PythonCqrsCodec` (python-cqrs 5.x's camelCase JSON, no headers) and
    `ProtobufCodec`.

    Attributes:
        content_type: the MIME type of the bytes (RabbitMQ's `content_type`).
        transport_headers: whether brokers add their `event_name` /
            `message_id` headers (python-cqrs's wire has none).

    Example:
        ```python
        class UpperJson:
            content_type = "application/json"
            transport_headers = True

            def encode(self, message):
                return anycqrs.serialization.dumps(message.payload).upper()

            def decode(self, value, event_name, event_types):
                ...

        assert isinstance(UpperJson(), MessageCodec)
        ```
    """

    content_type: str
    transport_headers: bool

    def encode(self, message: Message, /) -> bytes:
        """The wire bytes of `message` (raises `SerializationError`)."""
        ...

    def decode(
        self, value: bytes, event_name: str | None, event_types: EventTypes, /
    ) -> NotificationEvent[Any]:
        """The event `value` carries; `event_name` is the transport's header
        (`None` when absent), `event_types` resolves the name to its binding.

        Raises:
            DeserializationError: the bytes do not fit the bound class.
            UnknownEventName: nothing is bound under the name.
        """
        ...


class JsonCodec:
    """The default wire format: the JSON of `to_dict(event)` (snake_case keys),
    with `event_name` / `message_id` transport headers.

    Consumers decode it on the msgspec fast path (`EventDecoder`); `decode`
    here is the same decoding for direct use.

    Example:
        ```python
        codec = JsonCodec()
        raw = codec.encode(Message.from_event(event))
        again = codec.decode(raw, event.event_name, mediator.event_map)
        ```
    """

    __slots__ = ()

    content_type = "application/json"
    transport_headers = True

    def encode(self, message: Message, /) -> bytes:
        """`dumps(message.payload)`."""
        try:
            return dumps(message.payload)
        except Exception as exc:
            raise SerializationError(
                f"Cannot encode the payload of {message.message_name} as JSON: {exc}"
            ) from exc

    def decode(
        self, value: bytes, event_name: str | None, event_types: EventTypes, /
    ) -> NotificationEvent[Any]:
        """Decode like a consumer does (see `anycqrs.consumers.EventDecoder`)."""
        return self.decoder(event_types)(value, event_name, None, None)  # type: ignore[no-any-return]

    @staticmethod
    def decoder(event_types: EventTypes) -> EventDecoder:
        """An `EventDecoder` of this format (keep it: it caches per event name)."""
        from ..consumers import EventDecoder

        return EventDecoder(event_types)

    def __repr__(self) -> str:
        return "JsonCodec()"


JSON = JsonCodec()
"""The default codec (stateless)."""


def payload_type(cls: Any) -> Any:
    """`P` of a bound `NotificationEvent[P]` (`typing.Any` when unparametrized)."""
    args = getattr(cls, "__args__", None)
    return args[0] if args else Any


def not_an_object(value: Any) -> DeserializationError:
    """The error for wire JSON that is not an object."""
    return DeserializationError(
        NotificationEvent, [f"expected a JSON object, got {type(value).__name__} @ $"]
    )
