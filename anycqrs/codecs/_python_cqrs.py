"""`PythonCqrsCodec`: python-cqrs 5.x's JSON wire format, both ways."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..errors import DeserializationError, SerializationError, UnknownEventName
from ..messages import NotificationEvent, event_name_of
from ..serialization import dumps, from_dict, loads
from ._protocol import not_an_object, payload_type
from ._rename import to_camel, to_snake

if TYPE_CHECKING:
    from ..brokers import Message
    from ..consumers._protocols import EventTypes

__all__ = ["PythonCqrsCodec"]

_ENVELOPE = (
    ("eventId", "event_id"),
    ("eventTimestamp", "event_timestamp"),
    ("topic", "topic"),
)


class PythonCqrsCodec:
    """The wire format of python-cqrs 5.x (`orjson.dumps(event.to_dict())` of
    its dataclass `NotificationEvent`): camelCase keys (`eventName`,
    `eventId` as 32 hex digits, `eventTimestamp`, `topic`, `payload` with
    camelCase field names), no `key` or `headers` fields and no transport
    headers (the record key stays the event's `key`).

    Reading is tolerant where python-cqrs is: a field is taken from its
    camelCase key or its snake_case name (python-cqrs's pydantic events write
    those), the event name from the `event_name` header when a producer set
    one, else `eventName` / `event_name`; a naive `eventTimestamp`
    (python-cqrs writes local time without an offset) is read as UTC. The
    payload is renamed by its bound class, so the keys of `dict` fields stay
    as written; then decoding is as strict as anycqrs's own format.

    Writing renames the field names of the payload by its class when the
    codec knows it: `payload_types` is an `EventMap` (or any
    `anycqrs.consumers.EventTypes`) that binds the event name, or the payload
    classes themselves. Without it every object key in the payload is
    camelCased (`dict` keys too) and UUIDs stay in their dashed form.

    Args:
        payload_types: the payload classes (or bindings) used to rename
            payloads by type when encoding.

    Example:
        ```python
        broker = KafkaMessageBroker(config, codec=PythonCqrsCodec([OrderPaid, OrderShipped]))
        consumer = KafkaEventConsumer(config, ["orders"], mediator, codec=PythonCqrsCodec())
        ```
    """

    __slots__ = ("_event_types", "_payloads")

    content_type = "application/json"
    transport_headers = False

    def __init__(self, payload_types: EventTypes | Iterable[type] | None = None) -> None:
        self._event_types: EventTypes | None = None
        self._payloads: dict[str, type] = {}
        if payload_types is None:
            return
        from ..consumers import EventTypes  # the consumer layer imports the codecs

        if isinstance(payload_types, EventTypes):
            self._event_types = payload_types
        else:
            self._payloads = {event_name_of(cls): cls for cls in payload_types}

    def __repr__(self) -> str:
        return "PythonCqrsCodec()"

    def _payload_type(self, event_name: str) -> Any:
        if self._event_types is None:
            return self._payloads.get(event_name, Any)
        try:
            return payload_type(self._event_types.notification_type(event_name))
        except UnknownEventName:
            return Any

    def encode(self, message: Message, /) -> bytes:
        """The python-cqrs JSON of `message` (its `payload` is `to_dict(event)`)."""
        data = message.payload
        if not isinstance(data, dict):
            raise SerializationError(
                f"Cannot encode {message.message_name} in the python-cqrs format: the "
                f"payload is a {type(data).__name__}, not an event's to_dict()"
            )
        body: dict[str, Any] = {
            "eventName": data.get("event_name", message.message_name),
            "payload": to_camel(data.get("payload"), self._payload_type(message.message_name)),
            "eventId": UUID(str(data.get("event_id", message.message_id))).hex,
        }
        if "event_timestamp" in data:
            body["eventTimestamp"] = data["event_timestamp"]
        body["topic"] = data.get("topic", message.topic)
        try:
            return dumps(body)
        except Exception as exc:
            raise SerializationError(
                f"Cannot encode the payload of {message.message_name} as JSON: {exc}"
            ) from exc

    def decode(
        self, value: bytes, event_name: str | None, event_types: EventTypes, /
    ) -> NotificationEvent[Any]:
        """The event a python-cqrs producer wrote (see the class docstring)."""
        body = loads(value, NotificationEvent)
        if not isinstance(body, dict):
            raise not_an_object(body)
        if event_name is None:
            event_name = body.get("eventName", body.get("event_name"))
            if not isinstance(event_name, str):
                raise DeserializationError(
                    NotificationEvent, ["no event_name header and no eventName field @ $"]
                )
        cls = event_types.notification_type(event_name)
        data: dict[str, Any] = {"event_name": event_name}
        for camel_key, name in _ENVELOPE:
            if camel_key in body:
                data[name] = body[camel_key]
            elif name in body:
                data[name] = body[name]
        if "payload" in body:
            data["payload"] = to_snake(body["payload"], payload_type(cls))
        return from_dict(cls, data)
