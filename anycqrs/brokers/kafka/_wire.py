"""The Kafka wire format: how a `Message` becomes a record, how a consumed
record names its event, and what a dead letter carries.

Value = JSON of `to_dict(event)` (`Message.payload`), key = the event's `key`
(UTF-8), headers `event_name` and `message_id` plus the event's own headers.
"""

from __future__ import annotations

from typing import Any

from ...serialization import dumps
from .._message import Message

__all__ = ["Headers", "Record", "dead_letter_record", "encode_message", "event_name"]

Headers = list[tuple[str, str | bytes | None]]
"""Record headers as librdkafka takes them."""

Record = tuple[str, bytes | None, str | bytes | None, Headers | None]
"""`(topic, value, key, headers)` as handed to `Producer.produce`."""

_RESERVED_HEADERS = frozenset({"event_name", "message_id"})


def encode_message(message: Message) -> Record:
    """The `(topic, value, key, headers)` a `Message` is produced as.

    Key and header values stay `str`: librdkafka stores them UTF-8 encoded.
    The `event_name` and `message_id` headers come last and win over
    headers of the event with those names.

    Example:
        ```python
        topic, value, key, headers = encode_message(Message.from_event(event))
        ```
    """
    headers: Headers = [
        ("event_name", message.message_name),
        ("message_id", str(message.message_id)),
    ]
    if message.headers:
        headers = [
            (name, value if type(value) is str else str(value))
            for name, value in message.headers.items()
            if name not in _RESERVED_HEADERS
        ] + headers
    return message.topic, dumps(message.payload), message.key, headers


def event_name(msg: Any) -> bytes | None:
    """The `event_name` header of a consumed record (raw bytes), if any."""
    name: bytes | None = None
    headers = msg.headers()  # consumed: [(name, bytes | None)]
    if headers:
        for header, value in headers:
            if header == "event_name" and value is not None:
                name = value
    return name


def dead_letter_record(msg: Any, error: BaseException, attempts: int, topic: str) -> Record:
    """A consumed record as it goes to the dead-letter `topic`: original value,
    key and headers plus `anycqrs.error.*`, `anycqrs.original.*` and
    `anycqrs.attempts` headers."""
    headers: Headers = [
        (name, value if value is not None else b"") for name, value in msg.headers() or []
    ]
    headers += [
        ("anycqrs.error.type", type(error).__qualname__.encode()),
        ("anycqrs.error.message", str(error)[:4000].encode(errors="replace")),
        ("anycqrs.original.topic", str(msg.topic()).encode()),
        ("anycqrs.original.partition", str(msg.partition()).encode()),
        ("anycqrs.original.offset", str(msg.offset()).encode()),
        ("anycqrs.attempts", str(attempts).encode()),
    ]
    return topic, msg.value(), msg.key(), headers
