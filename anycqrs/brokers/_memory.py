from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from ..codecs import JSON, MessageCodec
from ..errors import SerializationError
from ._message import Message, payload_json

DEFAULT_MAX_MESSAGES = 10_000


def _encode(message: Message) -> None:
    """Encode the payload the way the Kafka and RabbitMQ brokers put it on the
    wire (`anycqrs.serialization.dumps`), so what they would refuse is
    refused here too."""
    try:
        payload_json(message)
    except Exception as exc:
        raise SerializationError(
            f"Cannot encode the payload of {message.message_name} (message "
            f"{message.message_id}) for the wire: {exc}"
        ) from exc


class InMemoryMessageBroker:
    """Keeps published messages in memory: the embedded default and a test double.

    It encodes every message the way the real brokers' wire does (the JSON of
    its payload, `anycqrs.serialization.dumps`), so a payload they would
    refuse (a `Decimal`, a plain class the converter leaves as is) raises
    `anycqrs.errors.SerializationError` here too, and nothing of that
    publish is kept. `messages` holds what was accepted.

    It is bounded: past `max_messages` the oldest messages are dropped, so a
    long-running process never grows without limit.

    Args:
        max_messages: how many messages to keep (default 10 000).
        codec: the wire format messages are checked against (an
            `anycqrs.codecs.MessageCodec`; default JSON); `encoded` gives
            the bytes.

    Example:
        ```python
        broker = InMemoryMessageBroker()
        mediator = bootstrap(message_broker=broker, ...)
        await mediator.send(PayOrder(order_id=1))
        assert broker.messages[-1].message_name == "OrderPaid"
        ```
    """

    __slots__ = ("_check", "_codec", "_messages")

    def __init__(
        self, max_messages: int = DEFAULT_MAX_MESSAGES, *, codec: MessageCodec | None = None
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        self._messages: deque[Message] = deque(maxlen=max_messages)
        self._codec = JSON if codec is None else codec
        self._check = _encode if codec is None else self._codec.encode

    def encoded(self, message: Message, /) -> bytes:
        """The bytes the broker's codec puts on the wire for `message`.

        Example:
            ```python
            raw = broker.encoded(broker.messages[-1])
            ```
        """
        return self._codec.encode(message)

    @property
    def messages(self) -> list[Message]:
        """What was sent, oldest first (at most `max_messages`): the messages
        as published, each one whose payload encoded for the wire."""
        return list(self._messages)

    @property
    def max_messages(self) -> int:
        """The bound."""
        return self._messages.maxlen or 0

    def clear(self) -> None:
        """Forget every message."""
        self._messages.clear()

    async def send_message(self, message: Message, /) -> None:
        """Encode `message` like the wire, then record it.

        Raises:
            SerializationError: its payload can't be encoded.
        """
        self._check(message)
        self._messages.append(message)

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Encode `messages` like the wire, then record them in order (none
        of them if one can't be encoded).

        Raises:
            SerializationError: a payload can't be encoded.
        """
        batch = messages if isinstance(messages, (list, tuple)) else tuple(messages)
        check = self._check
        for message in batch:
            check(message)
        self._messages.extend(batch)


class DevnullMessageBroker:
    """Accepts every message and keeps nothing."""

    __slots__ = ()

    async def send_message(self, message: Message, /) -> None:
        """Drop ``message``."""

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Drop ``messages``."""
