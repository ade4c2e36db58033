"""The Kafka wire format: how a `Message` becomes a record, how a consumed
record names its event, and what a dead letter carries.

Value = JSON of `to_dict(event)` (`Message.payload`; the bytes
`Message.from_event` encoded once), key = the event's `key`
(UTF-8), headers `event_name` and `message_id` plus the event's own headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any

from ...codecs import JsonCodec, MessageCodec
from .._message import Message, _Encoded, payload_json, uuid_texts

__all__ = [
    "Headers",
    "Record",
    "dead_letter_record",
    "encode_message",
    "encode_messages",
    "event_name",
    "record_encoder",
    "record_key",
    "truncated_dead_letter",
]

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
    return next(encode_messages((message,)))


def encode_messages(messages: Sequence[Message]) -> Iterator[Record]:
    """`encode_message` of each of `messages`, in order (what the producer
    runs): their ids' text comes from one call for all of them; each
    record is built as it is taken (none waits, for the garbage collector
    to traverse, until the others are built).

    Example:
        ```python
        records = list(encode_messages([Message.from_event(event) for event in events]))
        ```
    """
    for message, message_id in zip(
        messages, uuid_texts([message.message_id for message in messages]), strict=True
    ):
        headers: Headers = []
        for name, value in message.headers.items():  # a loop: cheaper than a comprehension
            if name not in _RESERVED_HEADERS:
                headers.append((name, value if type(value) is str else str(value)))
        headers.append(("event_name", message.message_name))
        headers.append(("message_id", message_id))
        payload = message._payload  # `payload_json`, inlined
        raw = payload.raw if type(payload) is _Encoded else payload_json(message)
        yield message.topic, raw, message.key, headers


def record_encoder(codec: MessageCodec | None) -> Callable[[Sequence[Message]], Iterator[Record]]:
    """How a producer with `codec` turns messages into records:
    `encode_messages` for JSON (the default); otherwise each value is
    `codec.encode(message)` and the `event_name` / `message_id` headers are
    added only when `codec.transport_headers` (python-cqrs's wire has none).

    Example:
        ```python
        encode = record_encoder(PythonCqrsCodec())
        [(topic, value, key, headers)] = encode([Message.from_event(event)])
        ```
    """
    if codec is None or isinstance(codec, JsonCodec):
        return encode_messages
    encode, with_ids = codec.encode, codec.transport_headers

    def encode_with_codec(messages: Sequence[Message]) -> Iterator[Record]:
        ids: Iterable[str | None] = (
            uuid_texts([message.message_id for message in messages]) if with_ids else repeat(None)
        )
        for message, message_id in zip(messages, ids, strict=False):
            headers: Headers = [
                (name, value if type(value) is str else str(value))
                for name, value in message.headers.items()
                if not with_ids or name not in _RESERVED_HEADERS
            ]
            if with_ids:
                headers += [("event_name", message.message_name), ("message_id", message_id)]
            yield message.topic, encode(message), message.key, headers or None

    return encode_with_codec


def event_name(msg: Any) -> bytes | None:
    """The `event_name` header of a consumed record (raw bytes), if any."""
    name: bytes | None = None
    headers = msg.headers()  # consumed: [(name, bytes | None)]
    if headers:
        for header, value in headers:
            if header == "event_name" and value is not None:
                name = value
    return name


def record_key(key: bytes) -> str:
    """A consumed record's key as the event's `key`: UTF-8, and a key that
    is not valid UTF-8 keeps its undecodable bytes as `\\xNN` escapes
    (`b"o\\xff1"` becomes `"o\\\\xff1"`) instead of making the event poison.
    Ordering still follows the raw bytes."""
    try:
        return key.decode()
    except UnicodeDecodeError:
        return key.decode(errors="backslashreplace")


def dead_letter_record(msg: Any, error: BaseException, attempts: int, topic: str) -> Record:
    """A consumed record as it goes to the dead-letter `topic`: original value,
    key and headers plus `anycqrs.error.*`, `anycqrs.original.*` and
    `anycqrs.attempts` headers."""
    headers: Headers = [
        (name, value if value is not None else b"") for name, value in msg.headers() or []
    ]
    return topic, msg.value(), msg.key(), headers + _error_headers(msg, error, attempts)


_SMALL = 1024
"""Key and header values longer than this are left out of a truncated dead letter."""

TRUNCATED_VALUE = 4096
"""How many bytes of the value a truncated dead letter keeps."""


def truncated_dead_letter(
    msg: Any, error: BaseException, attempts: int, topic: str, rejected: str
) -> Record:
    """The dead letter written when the topic refused the full one (too
    large): the first `TRUNCATED_VALUE` bytes of the value, the key and the
    original headers when each is at most 1 KiB, and the usual
    `anycqrs.error.*` / `anycqrs.original.*` headers, marked by
    `anycqrs.truncated` (what was cut: `value`, `headers`, `key`,
    comma-separated), `anycqrs.original.size` (the value's size in bytes)
    and `anycqrs.rejected` (why the full one was refused)."""
    value, key = msg.value(), msg.key()
    truncated = ["value"]
    if value is not None:
        value = value[:TRUNCATED_VALUE]
    headers: Headers = []
    for name, header in msg.headers() or []:
        if header is None or len(header) <= _SMALL:
            headers.append((name, header if header is not None else b""))
        elif "headers" not in truncated:
            truncated.append("headers")
    if key is not None and len(key) > _SMALL:
        key = None
        truncated.append("key")
    size = len(msg.value() or b"")
    headers += _error_headers(msg, error, attempts)
    headers += [
        ("anycqrs.truncated", ",".join(truncated).encode()),
        ("anycqrs.original.size", str(size).encode()),
        ("anycqrs.rejected", rejected[:_SMALL].encode(errors="replace")),
    ]
    return topic, value, key, headers


def _error_headers(msg: Any, error: BaseException, attempts: int) -> Headers:
    return [
        ("anycqrs.error.type", type(error).__qualname__.encode()),
        ("anycqrs.error.message", str(error)[:4000].encode(errors="replace")),
        ("anycqrs.original.topic", str(msg.topic()).encode()),
        ("anycqrs.original.partition", str(msg.partition()).encode()),
        ("anycqrs.original.offset", str(msg.offset()).encode()),
        ("anycqrs.attempts", str(attempts).encode()),
    ]
