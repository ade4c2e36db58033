from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from ._message import Message

DEFAULT_MAX_MESSAGES = 10_000


class InMemoryMessageBroker:
    """Keeps published messages in memory: the embedded default and a test double.

    It is bounded: past ``max_messages`` the oldest messages are dropped, so a
    long-running process never grows without limit.

    Args:
        max_messages: how many messages to keep (default 10 000).

    Example:
        ```python
        broker = InMemoryMessageBroker()
        mediator = bootstrap(message_broker=broker, ...)
        await mediator.send(PayOrder(order_id=1))
        assert broker.messages[-1].message_name == "OrderPaid"
        ```
    """

    __slots__ = ("_messages",)

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        self._messages: deque[Message] = deque(maxlen=max_messages)

    @property
    def messages(self) -> list[Message]:
        """What was sent, oldest first (at most ``max_messages``)."""
        return list(self._messages)

    @property
    def max_messages(self) -> int:
        """The bound."""
        return self._messages.maxlen or 0

    def clear(self) -> None:
        """Forget every message."""
        self._messages.clear()

    async def send_message(self, message: Message, /) -> None:
        """Record ``message``."""
        self._messages.append(message)

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Record ``messages`` in order."""
        self._messages.extend(messages)


class DevnullMessageBroker:
    """Accepts every message and keeps nothing."""

    __slots__ = ()

    async def send_message(self, message: Message, /) -> None:
        """Drop ``message``."""

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Drop ``messages``."""
