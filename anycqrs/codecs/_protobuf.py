"""`ProtobufCodec`: payloads as protobuf messages inside a small envelope.

`google.protobuf` is imported when a codec is built, never before.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import timezone
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import DeserializationError, SerializationError
from ..messages import NotificationEvent, event_name_of
from ..serialization import from_dict, to_dict
from ._protocol import payload_type

if TYPE_CHECKING:
    from ..brokers import Message
    from ..consumers._protocols import EventTypes

__all__ = ["ProtoConvertible", "ProtobufCodec"]


@runtime_checkable
class ProtoConvertible(Protocol):
    """A payload class with python-cqrs's protobuf hooks: `proto()` returns
    the generated message, the class method `from_proto(message)` builds the
    payload back.

    Example:
        ```python
        @attrs.frozen
        class OrderPaid:
            order_id: int

            def proto(self):
                return order_pb2.OrderPaid(order_id=self.order_id)

            @classmethod
            def from_proto(cls, message):
                return cls(order_id=message.order_id)
        ```
    """

    def proto(self) -> Any:
        """The generated protobuf message of this payload."""
        ...


def _envelope_class() -> Any:
    """The `anycqrs.Envelope` message class, in a descriptor pool of its own."""
    descriptor_pb2 = importlib.import_module("google.protobuf.descriptor_pb2")
    descriptor_pool = importlib.import_module("google.protobuf.descriptor_pool")
    message_factory = importlib.import_module("google.protobuf.message_factory")
    Field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="anycqrs/envelope.proto", package="anycqrs", syntax="proto2"
    )
    envelope = file.message_type.add(name="Envelope")
    for number, name, kind in (
        (1, "event_id", Field.TYPE_STRING),
        (2, "event_name", Field.TYPE_STRING),
        (3, "event_timestamp", Field.TYPE_STRING),
        (4, "topic", Field.TYPE_STRING),
        (5, "key", Field.TYPE_STRING),
        (7, "payload", Field.TYPE_BYTES),
    ):
        envelope.field.add(name=name, number=number, type=kind, label=Field.LABEL_OPTIONAL)
    entry = envelope.nested_type.add(name="HeadersEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL)
    envelope.field.add(
        name="headers",
        number=6,
        type=Field.TYPE_MESSAGE,
        label=Field.LABEL_REPEATED,
        type_name=".anycqrs.Envelope.HeadersEntry",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("anycqrs.Envelope"))


def message_data(message: Any) -> dict[str, Any]:
    """A protobuf message as plain data by field name: scalars as they are
    (64-bit integers stay integers), `Timestamp` as an aware datetime, an
    unset message field as `None`."""
    data: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        kind = field.message_type
        if kind is not None and kind.GetOptions().map_entry:
            value_field = kind.fields_by_name["value"]
            data[field.name] = {
                k: message_data(v) if value_field.message_type is not None else v
                for k, v in value.items()
            }
        elif _repeated(field):
            data[field.name] = [_value(v) if kind is not None else v for v in value]
        elif kind is not None:
            data[field.name] = _value(value) if message.HasField(field.name) else None
        else:
            data[field.name] = value
    return data


def _repeated(field: Any) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.28
    if isinstance(is_repeated, bool):
        return is_repeated
    return bool(field.label == field.LABEL_REPEATED)


def _value(message: Any) -> Any:
    if message.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        return message.ToDatetime(tzinfo=timezone.utc)
    return message_data(message)


class ProtobufCodec:
    """Payloads as protobuf: the payload is encoded with the generated message
    class bound to its event name, inside an `anycqrs.Envelope` protobuf
    message carrying `event_id`, `event_name`, `event_timestamp` (RFC 3339),
    `topic`, `key`, `headers` and the payload bytes.

    A payload class that has python-cqrs's hooks (`ProtoConvertible`:
    `proto()` / `from_proto()`) converts itself; otherwise its plain data
    (`to_dict`) fills the message field by field (`json_format.ParseDict`),
    and a decoded message becomes plain data again for the strict
    `from_dict` (64-bit integers stay integers, `Timestamp` is a datetime).

    Args:
        messages: payload class (or event name) -> generated message class.

    Raises:
        ImportError: protobuf is not installed.

    Example:
        ```python
        codec = ProtobufCodec({OrderPaid: orders_pb2.OrderPaid})
        broker = KafkaMessageBroker(config, codec=codec)
        consumer = KafkaEventConsumer(config, ["orders"], mediator, codec=codec)
        ```
    """

    __slots__ = ("_envelope", "_json_format", "_messages", "_payloads")

    content_type = "application/x-protobuf"
    transport_headers = True

    def __init__(self, messages: Mapping[type | str, Any]) -> None:
        self._json_format = importlib.import_module("google.protobuf.json_format")
        self._envelope = _envelope_class()
        self._messages: dict[str, Any] = {}
        self._payloads: dict[str, type] = {}
        for key, message_class in messages.items():
            name = key if isinstance(key, str) else event_name_of(key)
            self._messages[name] = message_class
            if not isinstance(key, str):
                self._payloads[name] = key

    def __repr__(self) -> str:
        return f"ProtobufCodec({sorted(self._messages)})"

    def _message_class(self, event_name: str, error: type[Exception]) -> Any:
        try:
            return self._messages[event_name]
        except KeyError:
            text = (
                f"ProtobufCodec has no message class for event {event_name!r}; "
                f"pass ProtobufCodec({{PayloadClass: GeneratedMessage}})"
            )
            if error is DeserializationError:
                raise DeserializationError(NotificationEvent, [f"{text} @ $"]) from None
            raise SerializationError(text) from None

    def encode(self, message: Message, /) -> bytes:
        """The envelope bytes of `message`."""
        name = message.message_name
        message_class = self._message_class(name, SerializationError)
        data = message.payload
        payload = data.get("payload") if isinstance(data, dict) else None
        try:
            payload_class = self._payloads.get(name)
            if payload_class is not None and issubclass(payload_class, ProtoConvertible):
                proto: Any = from_dict(payload_class, payload).proto()
            else:
                proto = self._json_format.ParseDict(payload, message_class())
            envelope = self._envelope(
                event_id=str(message.message_id),
                event_name=name,
                topic=message.topic,
                payload=proto.SerializeToString(),
            )
        except Exception as exc:
            raise SerializationError(
                f"Cannot encode the payload of {name} as {message_class.__name__}: {exc}"
            ) from exc
        if isinstance(data, dict) and isinstance(data.get("event_timestamp"), str):
            envelope.event_timestamp = data["event_timestamp"]
        if message.key is not None:
            envelope.key = message.key
        envelope.headers.update(message.headers)
        return envelope.SerializeToString()  # type: ignore[no-any-return]

    def decode(
        self, value: bytes, event_name: str | None, event_types: EventTypes, /
    ) -> NotificationEvent[Any]:
        """The event an envelope carries."""
        try:
            envelope = self._envelope.FromString(value)
        except Exception as exc:
            raise DeserializationError(
                NotificationEvent, [f"malformed protobuf envelope: {exc} @ $"]
            ) from exc
        name = event_name if event_name is not None else envelope.event_name
        cls = event_types.notification_type(name)
        message_class = self._message_class(name, DeserializationError)
        try:
            proto = message_class.FromString(envelope.payload)
        except Exception as exc:
            raise DeserializationError(
                cls, [f"malformed {message_class.__name__}: {exc} @ $.payload"]
            ) from exc
        target = payload_type(cls)
        from_proto = getattr(target, "from_proto", None) if isinstance(target, type) else None
        if from_proto is not None and issubclass(target, ProtoConvertible):
            payload = to_dict(from_proto(proto))
        else:
            payload = message_data(proto)
        data: dict[str, Any] = {
            "event_id": envelope.event_id,
            "event_name": name,
            "topic": envelope.topic,
            "payload": payload,
            "headers": dict(envelope.headers),
        }
        if envelope.HasField("event_timestamp"):
            data["event_timestamp"] = envelope.event_timestamp
        if envelope.HasField("key"):
            data["key"] = envelope.key
        return from_dict(cls, data)
