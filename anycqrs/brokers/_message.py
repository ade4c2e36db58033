"""The wire `Message`, the broker protocols and the batch publish helper."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast, runtime_checkable
from uuid import UUID, uuid4

import attrs

from .. import _codec
from ..messages import NotificationEvent
from ..observability._context import _CURRENT, stamp
from ..observability._propagation import inject_current
from ..observability._tracing import otel_context
from ..serialization import dumps, loads, to_dict

_UNREAD: Any = object()

_new = object.__new__
_current = _CURRENT.get
"""Bound once: CPython 3.11 compiles `imported_name.method()` to an attribute
load that builds a bound method per call (≈ 0.5k instructions)."""
_MISS = _codec.MISS
_open_plan, _closed, _json_encode = _codec.open_plan, _codec.closed, _codec.json_encode

uuid_text: Any
"""`str(uuid)`, faster: `str(UUID)` formats in Python (≈ 7k instructions),
msgspec's `to_builtins` in C (one call, one string), orjson's encoder
otherwise. Private to anycqrs (the brokers' id headers)."""
uuid_texts: Any
"""`[uuid_text(value) for value in values]` for a list of UUIDs, in one
call: ≈ 0.9k instructions an id with msgspec, against ≈ 1.9k for one
`uuid_text` call each. Private to anycqrs (the Kafka id headers)."""
try:
    from msgspec import to_builtins as uuid_text
    from msgspec import to_builtins as uuid_texts
except ImportError:  # pragma: no cover - msgspec is in the kafka and rabbitmq extras
    try:
        from orjson import dumps as _orjson_dumps
        from orjson import loads as _orjson_loads
    except ImportError:
        uuid_text = str

        def uuid_texts(values: list[UUID]) -> list[str]:
            return [str(value) for value in values]

    else:

        def uuid_text(value: UUID) -> str:
            text: str = _orjson_dumps(value)[1:-1].decode()
            return text

        def uuid_texts(values: list[UUID]) -> list[str]:
            texts: list[str] = _orjson_loads(_orjson_dumps(values))
            return texts


class _Encoded:
    """A payload held as the JSON bytes that go on the wire, decoded on first read.

    It compares equal to the plain data it decodes to, so a message built
    from an event equals one built by hand with `to_dict(event)`.
    """

    __slots__ = ("_data", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._data = _UNREAD

    @property
    def data(self) -> Any:
        data = self._data
        if data is _UNREAD:
            data = self._data = loads(self.raw)
        return data

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Encoded):
            return self.raw == other.raw or bool(self.data == other.data)
        return bool(self.data == other)

    __hash__ = None  # type: ignore[assignment]  # like the dict it stands for

    def __reduce__(self) -> tuple[type[_Encoded], tuple[bytes]]:
        return _Encoded, (self.raw,)


@attrs.frozen(kw_only=True, repr=False)
class Message:
    """What goes on the wire for one notification event.

    Build it from an event with `Message.from_event`, or by hand with the
    plain data as `payload`.
    """

    message_name: str
    """The event name used for routing (``NotificationEvent.event_name``)."""
    topic: str
    """Destination topic / routing key."""
    _payload: Any = attrs.field(alias="payload")
    # The `payload` given, or (from `from_event`) an `_Encoded`: the JSON the
    # brokers send, encoded once by the fast codec; `payload` decodes it when read.
    message_id: UUID = attrs.field(factory=uuid4)
    """Unique id (the event's ``event_id``)."""
    key: str | None = None
    """Partition / ordering key."""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    """Transport headers (the event's own)."""

    @property
    def payload(self) -> Any:
        """The plain data that is sent: ``to_dict(event)`` (for a message from
        `from_event`, decoded from the JSON it goes on the wire as, on first
        read)."""
        payload = self._payload
        return payload.data if type(payload) is _Encoded else payload

    def __repr__(self) -> str:
        return (
            f"Message(message_name={self.message_name!r}, topic={self.topic!r}, "
            f"payload={self.payload!r}, message_id={self.message_id!r}, key={self.key!r}, "
            f"headers={self.headers!r})"
        )

    @classmethod
    def from_event(cls, event: NotificationEvent[Any]) -> Message:
        """The message that carries ``event``.

        Its headers are the event's own plus the correlation headers
        (``correlation_id``, ``causation_id``) of the message being handled
        (`anycqrs.observability.current_message`) and, with a current
        OpenTelemetry span, its trace context (``traceparent``...): the
        message's creation context. Headers the event sets win.

        The event is encoded here, once: when the fast codec (msgspec) takes
        its type, the message carries the JSON the brokers send, and
        `payload` is decoded from it only if read.
        """
        headers = {**event.headers}  # dict(), without the call
        if _current() is not None:
            stamp(headers)
        if otel_context():  # empty: no span, nothing for `inject_current` to inject
            inject_current(headers)
        raw = _MISS
        cls_ = type(event)  # `_codec.encode`, inlined as in `to_json`: two calls less
        plan = _open_plan(cls_)  # `NotificationEvent.payload` is open
        if (type(plan[0](event)) in plan[1]) if plan is not None else cls_ in _closed:
            try:
                raw = _json_encode(event)
            except Exception:  # noqa: BLE001 - the general path says what is wrong
                pass
        if raw is _MISS:  # not (yet) known to the fast path: the general way
            raw = _codec.encode(event)
        if raw is _MISS:
            payload = to_dict(event)
        else:  # `_Encoded(raw)`, without its Python `__init__` frame
            payload = _new(_Encoded)
            _set_raw(payload, raw)
            _set_data(payload, _UNREAD)
        if cls is not Message:  # a subclass may have fields (and an __init__) of its own
            return cls(
                message_name=event.event_name,
                message_id=event.event_id,
                topic=event.topic,
                payload=payload,
                key=event.key,
                headers=headers,
            )
        # What the attrs __init__ does, without its keyword binding and
        # defaults (≈ 0.3 µs), through the slots' own setters (no attribute
        # lookup per field); `test_from_event_sets_every_field` pins it.
        message = _new(Message)
        _set_name(message, event.event_name)
        _set_topic(message, event.topic)
        _set_payload(message, payload)
        _set_id(message, event.event_id)
        _set_key(message, event.key)
        _set_headers(message, headers)
        return message


_set_raw, _set_data = (_Encoded.__dict__[name].__set__ for name in ("raw", "_data"))
_set_name, _set_topic, _set_payload, _set_id, _set_key, _set_headers = (
    Message.__dict__[name].__set__
    for name in ("message_name", "topic", "_payload", "message_id", "key", "headers")
)
"""The slots' setters (`member_descriptor.__set__`): a frozen attrs class
refuses `setattr`, its slots don't."""


def payload_json(message: Message) -> bytes:
    """The JSON of `message.payload` as the brokers send it: the bytes
    `Message.from_event` encoded, else `dumps(message.payload)`.

    Private to anycqrs (the brokers' JSON wire and the outbox use it).
    """
    payload = message._payload
    return payload.raw if type(payload) is _Encoded else dumps(payload)


def encoded_payload(message: Message) -> bytes | None:
    """The JSON bytes `Message.from_event` encoded the payload as (`None`
    for a message built with plain data). Private to anycqrs."""
    payload = message._payload
    return payload.raw if type(payload) is _Encoded else None


@runtime_checkable
class MessageBroker(Protocol):
    """Anything that can publish a `Message`.

    `send_message` returns once the broker accepted the message (or raises).
    Brokers that can publish batches also implement `BatchMessageBroker`;
    anycqrs (the event dispatcher, the outbox relay) then publishes a batch
    with one `send_many` call.
    """

    async def send_message(self, message: Message, /) -> None:
        """Publish one message."""
        ...


@runtime_checkable
class BatchMessageBroker(MessageBroker, Protocol):
    """A `MessageBroker` that also publishes batches.

    `send_many` publishes the messages in order (messages with one key stay
    in order) and returns once the broker accepted all of them. The built-in
    in-memory, devnull, Kafka and RabbitMQ brokers are batch brokers.

    Example:
        ```python
        class ListBroker:
            def __init__(self):
                self.sent = []

            async def send_message(self, message, /):
                self.sent.append(message)

            async def send_many(self, messages, /):
                self.sent.extend(messages)

        assert isinstance(ListBroker(), BatchMessageBroker)
        ```
    """

    async def send_many(self, messages: Sequence[Message], /) -> None:
        """Publish `messages` in order."""
        ...


@functools.lru_cache(maxsize=256)
def _class_publishes_batches(cls: type) -> bool:
    # isinstance() on the protocol costs 6-12 us per call, the cached class answer ~0.15 us
    return issubclass(cls, BatchMessageBroker)


def publishes_batches(broker: MessageBroker) -> bool:
    """Whether `broker` is a `BatchMessageBroker`.

    The capability is declared by the broker's class (a `send_many` method)
    and decided once per class; an instance attribute doesn't count.
    """
    return _class_publishes_batches(type(broker))


async def publish_many(broker: MessageBroker, messages: Sequence[Message]) -> None:
    """Publish `messages` in order, as one batch when `broker` is a `BatchMessageBroker`.

    Private to anycqrs (the event dispatcher and the outbox relay use it).
    """
    if publishes_batches(broker):
        await cast(BatchMessageBroker, broker).send_many(messages)
        return
    for message in messages:
        await broker.send_message(message)
