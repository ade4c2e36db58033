"""Correlation without OpenTelemetry: the message being handled, in a
contextvar, and the headers every outgoing message gets from it.

Header names (on Kafka records, AMQP headers and outbox rows alike):

* `message_id`: the message's own id (the event's `event_id`).
* `correlation_id`: the id of the request (or first message) the whole
  conversation started with; a message without one is its own origin.
* `causation_id`: the id of the message whose handling produced this one.

Who sets the current message: consumers (for each consumed message),
saga runs (for each run), and your own entry points with `correlation_scope`
(the ASGI `CorrelationMiddleware` does it per HTTP request). `send` on a
mediator sets nothing (it would cost a third of a bare `send`): a command
sent outside any scope starts no conversation of its own, and each event it
emits becomes an origin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, Union
from uuid import uuid4

import attrs

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "MESSAGE_ID",
    "LaneMessage",
    "LazyMessage",
    "MessageContext",
    "correlation_scope",
    "current_message",
    "message_from_headers",
    "stamp",
    "use_message",
]

MESSAGE_ID = "message_id"
"""Header naming a message's own id."""
CORRELATION_ID = "correlation_id"
"""Header naming the originating request's (or first message's) id."""
CAUSATION_ID = "causation_id"
"""Header naming the message whose handling produced this one."""


@attrs.frozen
class MessageContext:
    """The message being handled now, as `current_message` returns it.

    Attributes:
        message_id: the id of the message being handled (a request scope's
            own id when opened by `correlation_scope`).
        correlation_id: the id of the conversation's origin.
        causation_id: the message that caused this one (`None`: an origin).

    Example:
        ```python
        with correlation_scope("req-42") as scope:
            assert current_message() == scope
            assert scope.correlation_id == "req-42"
        ```
    """

    message_id: str
    correlation_id: str
    causation_id: str | None = None


class LazyMessage:
    """A `MessageContext` read from a consumed message's headers only when
    asked for (consumers set one per message; most are never read)."""

    __slots__ = ("_arg", "_read", "_resolved")

    def __init__(self, read: Callable[[Any], MessageContext], arg: Any) -> None:
        self._read = read
        self._arg = arg
        self._resolved: MessageContext | None = None

    def resolve(self) -> MessageContext:
        """The context (read once)."""
        resolved = self._resolved
        if resolved is None:
            resolved = self._resolved = self._read(self._arg)
        return resolved


class LaneMessage:
    """The current message of one consumer lane: the lane sets it current
    once and points it at each item it handles (`item`), so a message costs
    an attribute write, not a context switch; read lazily, once per item.

    A task a handler starts that outlives the handler sees the lane's later
    messages: take `current_message()` (a frozen `MessageContext`) before.
    """

    __slots__ = ("_read", "_resolved", "item")

    def __init__(self, read: Callable[[Any], MessageContext]) -> None:
        self._read = read
        self.item: Any = None
        self._resolved: tuple[Any, MessageContext] | None = None

    def resolve(self) -> MessageContext | None:
        """The context of the item being handled (`None` between items)."""
        item = self.item
        if item is None:
            return None
        resolved = self._resolved
        if resolved is None or resolved[0] is not item:
            resolved = self._resolved = (item, self._read(item))
        return resolved[1]


class Resolves(Protocol):
    """A current message read only when asked for (`LazyMessage`,
    `LaneMessage`, a saga's `Run`): `resolve()` returns it."""

    def resolve(self) -> MessageContext | None:
        """The message (`None`: none now)."""
        ...


_Current = Union[MessageContext, Resolves, None]

_CURRENT: ContextVar[_Current] = ContextVar("anycqrs_current_message", default=None)


def current_message() -> MessageContext | None:
    """The message being handled in this task (`None` outside any).

    Example:
        ```python
        class OnOrderPaid(anycqrs.EventHandler[NotificationEvent[OrderPaid]]):
            async def handle(self, event):
                ctx = current_message()
                print(ctx.correlation_id if ctx else "no conversation")
        ```
    """
    current = _CURRENT.get()
    if current is None or type(current) is MessageContext:
        return current
    return current.resolve()  # type: ignore[union-attr]  # a lazy one (`Resolves`)


def _new_id() -> str:
    return str(uuid4())


@contextmanager
def correlation_scope(
    correlation_id: str | None = None,
    *,
    message_id: str | None = None,
    causation_id: str | None = None,
) -> Iterator[MessageContext]:
    """Handle something (an HTTP request, a CLI command, a job) as one
    conversation: messages emitted inside carry its `correlation_id`, and
    its `message_id` as their `causation_id`.

    Args:
        correlation_id: the conversation's id (e.g. an `X-Request-ID`); a
            new UUID when `None`. Inside another scope, `None` keeps the
            outer correlation id.
        message_id: this scope's own id (default: a new UUID, or the
            correlation id when that is new too).
        causation_id: what caused it (default: the enclosing message).

    Example:
        ```python
        with correlation_scope("req-42"):
            assert current_message().correlation_id == "req-42"
        assert current_message() is None
        ```
    """
    outer = current_message()
    if correlation_id is None:
        correlation_id = outer.correlation_id if outer is not None else None
    if message_id is None:
        message_id = correlation_id if correlation_id is not None and outer is None else _new_id()
    if correlation_id is None:
        correlation_id = message_id
    if causation_id is None and outer is not None:
        causation_id = outer.message_id
    context = MessageContext(message_id, correlation_id, causation_id)
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


@contextmanager
def use_message(context: MessageContext | Resolves) -> Iterator[None]:
    """Make `context` the current message for the block (library-internal)."""
    token = _CURRENT.set(context)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def message_from_headers(
    headers: Mapping[str, Any], message_id: str | None = None
) -> MessageContext:
    """The context of a consumed message from its headers (`str` or UTF-8
    `bytes` values): its id (`message_id` header, else `message_id`), its
    correlation id (the header, else its own id) and causation id.

    Example:
        ```python
        headers = {"message_id": "m2", "correlation_id": "r1", "causation_id": "m1"}
        ctx = message_from_headers(headers)
        assert ctx == MessageContext("m2", "r1", "m1")
        ```
    """
    own = _text(headers.get(MESSAGE_ID)) or message_id or _new_id()
    return MessageContext(
        own,
        _text(headers.get(CORRELATION_ID)) or own,
        _text(headers.get(CAUSATION_ID)),
    )


def _text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode(errors="replace")
    return str(value)


def stamp(headers: MutableMapping[str, str]) -> None:
    """Give an outgoing message's `headers` the correlation headers of the
    current message (headers already set are kept). Without a current
    message nothing is added: the message is its own origin (its
    `message_id` is its correlation id)."""
    current = _CURRENT.get()
    if current is None:
        return
    context = current if isinstance(current, MessageContext) else current.resolve()
    if context is None:
        return
    if CORRELATION_ID not in headers:
        headers[CORRELATION_ID] = context.correlation_id
    if CAUSATION_ID not in headers:
        headers[CAUSATION_ID] = context.message_id
