"""Outbox data: row status, stored records, relay outcomes, the deprecated retry
policy factory, and the encoding shared by every backend."""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Union
from uuid import UUID

import attrs

from .._persistence import dumps, loads
from .._retry import RetryPolicy
from ..brokers import Message
from ..brokers._message import encoded_payload
from ..errors import DeserializationError
from ..messages import NotificationEvent
from ..observability._context import stamp
from ..observability._propagation import inject_current
from ._compression import decompress

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TABLE",
    "OutboxItem",
    "OutboxRecord",
    "OutboxRetryPolicy",
    "OutboxSettlement",
    "OutboxStatus",
    "EncodedMessage",
    "encode",
]

DEFAULT_TABLE = "anycqrs_outbox"
"""Table name used when none is given."""

OutboxItem = Union[NotificationEvent[Any], Message]
"""What can be stored: a notification event or a ready broker message."""


class OutboxStatus(str, enum.Enum):
    """Lifecycle of one outbox row.

    ``PENDING`` rows wait for the relay (first attempt or a retry);
    ``SENT`` rows were accepted by the broker; ``DEAD`` rows failed until
    the relay's retry policy gave up, or could not be decoded. Rows are never
    deleted by the relay.

    Example:
        ```python
        counts = store.counts()
        assert counts[OutboxStatus.DEAD] == 0
        ```
    """

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"

    def __str__(self) -> str:
        return self.value


@attrs.frozen(kw_only=True)
class EncodedMessage:
    """A message as it is written to a row (JSON text for payload and headers)."""

    message_id: UUID
    message_name: str
    topic: str
    key: str | None
    headers: str
    payload: str


def encode(item: OutboxItem, compress: Callable[[str], str] | None = None) -> EncodedMessage:
    """Encode a notification event (via `Message.from_event`) or a
    `anycqrs.brokers.Message` for storage: payload and headers as JSON text
    (the message is stored codec-neutral: the broker the relay publishes to
    applies its own wire codec), the payload compressed by `compress`. A ready
    message's headers get the correlation and trace headers like an event's
    (its own win)."""
    if isinstance(item, NotificationEvent):
        message = Message.from_event(item)  # its headers get the conversation and trace
        headers = message.headers
    elif isinstance(item, Message):
        message = item
        headers = dict(message.headers)
        stamp(headers)
        inject_current(headers)
    else:
        raise TypeError(
            f"The outbox stores NotificationEvent or anycqrs.brokers.Message, "
            f"got {type(item).__qualname__}"
        )
    raw = encoded_payload(message)  # from_event encoded it already
    text = dumps(message.payload) if raw is None else raw.decode()
    return EncodedMessage(
        message_id=message.message_id,
        message_name=message.message_name,
        topic=message.topic,
        key=message.key,
        headers=dumps(dict(headers)),
        payload=text if compress is None else compress(text),
    )


@attrs.frozen(kw_only=True)
class OutboxRecord:
    """One outbox row, as stored.

    ``payload`` and ``headers`` are the stored JSON text; `to_message`
    decodes the row into the `anycqrs.brokers.Message` the relay
    publishes.

    Example:
        ```python
        for record in store.fetch(status=OutboxStatus.DEAD):
            print(record.id, record.message_name, record.attempts, record.last_error)
        ```
    """

    id: int
    """Row id; increases with insertion order (the publish order)."""
    message_id: str
    """The message's id (the event's ``event_id``); unique in the table."""
    message_name: str
    """The event name used for routing."""
    topic: str
    """Destination topic."""
    key: str | None
    """Partition / ordering key."""
    headers: str
    """Transport headers, JSON text."""
    payload: str
    """The wire payload (``to_dict(event)``), JSON text, or its compressed
    form (``~zlib:`` / ``~zstd:`` and base64) when the writer compressed it;
    `to_message` decodes both."""
    status: OutboxStatus
    """Where the row is in its lifecycle."""
    attempts: int
    """Publish attempts made so far."""
    created_at: datetime
    """When the row was written."""
    next_attempt_at: datetime
    """When the relay may (re)try it."""
    last_error: str | None = None
    """The error of the last failed attempt (or why it could not be decoded)."""
    sent_at: datetime | None = None
    """When the broker accepted it."""

    def to_message(self) -> Message:
        """Decode the row.

        Raises:
            DeserializationError: the row's JSON, headers, compression or id
                are malformed.
        """
        try:
            message_id = UUID(self.message_id)
        except (TypeError, ValueError, AttributeError) as exc:
            raise DeserializationError(
                Message, [f"invalid message_id {self.message_id!r}: {exc} @ $.message_id"]
            ) from exc
        headers = loads(self.headers)
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise DeserializationError(
                Message, ["headers must be a JSON object of strings @ $.headers"]
            )
        return Message(
            message_name=self.message_name,
            topic=self.topic,
            payload=loads(decompress(self.payload)),
            message_id=message_id,
            key=self.key,
            headers=headers,
        )


@attrs.frozen(kw_only=True)
class OutboxSettlement:
    """What happened to one claimed batch; a store applies it in one transaction.

    Every change applies only to rows still held by the batch's claim token.

    Attributes:
        sent: ids the broker accepted (status ``sent``, one more attempt).
        retry: ``(id, next_attempt_at, error)`` for failed attempts to retry.
        dead: ``(id, error)`` for rows to dead-letter (row kept, status ``dead``).
        release: ids not attempted (claim dropped, attempts unchanged).

    Example:
        ```python
        store.settle(token, OutboxSettlement(sent=(1, 2)), now=utcnow())
        ```
    """

    sent: Sequence[int] = ()
    retry: Sequence[tuple[int, datetime, str]] = ()
    dead: Sequence[tuple[int, str]] = ()
    release: Sequence[int] = ()


DEFAULT_RETRY = RetryPolicy(attempts=10, delay=1.0, multiplier=2.0, max_delay=300.0)
"""The relay's retry policy when none is given: 10 attempts, then dead-lettered;
1 s, 2 s, 4 s ... between them, at most 5 minutes."""


def OutboxRetryPolicy(  # the former class name, kept one release
    *,
    initial_delay: float = 1.0,
    multiplier: float = 2.0,
    max_delay: float = 300.0,
    jitter: float = 0.0,
) -> RetryPolicy:
    """Deprecated: the equivalent `anycqrs.RetryPolicy`.

    ``OutboxRetryPolicy(initial_delay=d, multiplier=m, max_delay=x, jitter=j)``
    returns ``RetryPolicy(attempts=10, delay=d, multiplier=m, max_delay=x,
    jitter=j)`` (10 is the relay's default number of attempts before a row is
    dead-lettered). Pass a `RetryPolicy` to `OutboxRelay(retry=...)` instead.

    Example:
        ```python
        relay = OutboxRelay(store, broker, retry=anycqrs.RetryPolicy(
            attempts=10, delay=0.5, multiplier=2.0, max_delay=60.0))
        ```
    """
    warnings.warn(
        "OutboxRetryPolicy is deprecated; pass anycqrs.RetryPolicy(delay=..., multiplier=..., "
        "max_delay=..., jitter=..., attempts=...) as OutboxRelay(retry=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    return attrs.evolve(
        DEFAULT_RETRY,
        delay=initial_delay,
        multiplier=multiplier,
        max_delay=max_delay,
        jitter=jitter,
    )
