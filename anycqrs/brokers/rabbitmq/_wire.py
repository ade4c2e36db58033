"""The RabbitMQ wire format, both ways.

A message is published with body = JSON of `to_dict(event)`, `content_type`
`application/json`, `type` and header `event_name` = the event name,
`message_id` = the event id, header `key` = the event's key (the consumer's
ordering key) plus the event's own headers, persistent. A consumer routes by
the `event_name` header, else the AMQP `type`, else the JSON's own field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pika

from ...codecs import JsonCodec, MessageCodec
from .._message import Message, payload_json, uuid_text

__all__ = [
    "PERSISTENT",
    "dead_letter_properties",
    "message_encoder",
    "name_and_key",
    "properties",
]

PERSISTENT = 2
"""AMQP `delivery_mode` of a message written to disk."""


def properties(message: Message) -> Any:
    """The AMQP properties `message` is published with."""
    headers: dict[str, Any] = dict(message.headers)
    headers["event_name"] = message.message_name
    if message.key is not None:
        headers["key"] = message.key
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=PERSISTENT,
        message_id=uuid_text(message.message_id),
        type=message.message_name,
        headers=headers,
    )


def _json_wire(message: Message) -> tuple[bytes, Any]:
    return payload_json(message), properties(message)


def message_encoder(codec: MessageCodec | None) -> Callable[[Message], tuple[bytes, Any]]:
    """How a producer with `codec` turns a `Message` into `(body, properties)`:
    JSON with `properties(message)` by default; otherwise `codec.encode`,
    the codec's `content_type`, and the `event_name` header only when
    `codec.transport_headers` (the `type`, `message_id` and `key` stay).

    Example:
        ```python
        body, props = message_encoder(PythonCqrsCodec())(Message.from_event(event))
        ```
    """
    if codec is None or isinstance(codec, JsonCodec):
        return _json_wire
    encode, content_type, with_name = codec.encode, codec.content_type, codec.transport_headers

    def encode_with_codec(message: Message) -> tuple[bytes, Any]:
        props = properties(message)
        props.content_type = content_type
        if not with_name:
            del props.headers["event_name"]
        return encode(message), props

    return encode_with_codec


def name_and_key(properties: Any) -> tuple[str | None, str | None]:
    """The event name and ordering key a consumed message carries (`None`: absent)."""
    headers = properties.headers or {}
    name = headers.get("event_name") or properties.type
    key = headers.get("key")
    return (name if isinstance(name, str) else None), (key if isinstance(key, str) else None)


def dead_letter_properties(
    properties: Any, routing_key: str, queue: str, error: BaseException, attempts: int
) -> Any:
    """A failed message's properties plus the `anycqrs.error.*` headers saying why."""
    headers = dict(properties.headers or {})
    headers.update(
        {
            "anycqrs.error.type": type(error).__qualname__,
            "anycqrs.error.message": str(error)[:4000],
            "anycqrs.original.queue": queue,
            "anycqrs.original.routing_key": routing_key,
            "anycqrs.attempts": attempts,
        }
    )
    return pika.BasicProperties(
        content_type=properties.content_type,
        delivery_mode=PERSISTENT,
        message_id=properties.message_id,
        type=properties.type,
        headers=headers,
    )
