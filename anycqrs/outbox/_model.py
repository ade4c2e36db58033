"""Outbox data: row status, stored records, relay outcomes, retry policy, and the
encoding shared by every backend."""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Union
from uuid import UUID

import attrs

from ..brokers import Message
from ..errors import DeserializationError
from ..messages import NotificationEvent
from ..serialization import loads, to_json

__all__ = [
    "DEFAULT_TABLE",
    "OutboxItem",
    "OutboxRecord",
    "OutboxRetryPolicy",
    "OutboxSettlement",
    "OutboxStatus",
    "EncodedMessage",
    "encode",
    "table_identifier",
    "utcnow",
]

DEFAULT_TABLE = "anycqrs_outbox"
"""Table name used when none is given."""

OutboxItem = Union[NotificationEvent[Any], Message]
"""What can be stored: a notification event or a ready broker message."""

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def table_identifier(table: str) -> str:
    """Validate ``table`` and return it double-quoted for SQL.

    Only lowercase letters, digits and ``_`` (at most 48 characters, not
    starting with a digit) are accepted, so the name is safe to splice into
    SQL and derived index names stay within PostgreSQL's 63-character limit.
    """
    if not isinstance(table, str) or _IDENTIFIER.fullmatch(table) is None:
        raise ValueError(
            f"Invalid outbox table name {table!r}: use lowercase letters, digits and '_' "
            "(at most 48 characters, not starting with a digit)"
        )
    return f'"{table}"'


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class OutboxStatus(str, enum.Enum):
    """Lifecycle of one outbox row.

    ``PENDING`` rows wait for the relay (first attempt or a retry);
    ``SENT`` rows were accepted by the broker; ``DEAD`` rows failed
    ``max_attempts`` times or could not be decoded. Rows are never deleted by
    the relay.

    Example::

        counts = store.counts()
        assert counts[OutboxStatus.DEAD] == 0
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


def encode(item: OutboxItem) -> EncodedMessage:
    """Encode a notification event (via :meth:`Message.from_event`) or a
    :class:`~anycqrs.brokers.Message` for storage, with the core converter."""
    if isinstance(item, NotificationEvent):
        message = Message.from_event(item)
    elif isinstance(item, Message):
        message = item
    else:
        raise TypeError(
            f"The outbox stores NotificationEvent or anycqrs.brokers.Message, "
            f"got {type(item).__qualname__}"
        )
    return EncodedMessage(
        message_id=message.message_id,
        message_name=message.message_name,
        topic=message.topic,
        key=message.key,
        headers=to_json(dict(message.headers)).decode(),
        payload=to_json(message.payload).decode(),
    )


@attrs.frozen(kw_only=True)
class OutboxRecord:
    """One outbox row, as stored.

    ``payload`` and ``headers`` are the stored JSON text; :meth:`to_message`
    decodes the row into the :class:`~anycqrs.brokers.Message` the relay
    publishes.

    Example::

        for record in store.fetch(status=OutboxStatus.DEAD):
            print(record.id, record.message_name, record.attempts, record.last_error)
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
    """The wire payload (``to_dict(event)``), JSON text."""
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
            DeserializationError: the row's JSON, headers or id are malformed.
        """
        try:
            message_id = UUID(self.message_id)
        except (TypeError, ValueError, AttributeError) as exc:
            raise DeserializationError(
                "outbox row", [f"invalid message_id {self.message_id!r}: {exc} @ $.message_id"]
            ) from exc
        headers = loads(self.headers)
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise DeserializationError(
                "outbox row", ["headers must be a JSON object of strings @ $.headers"]
            )
        return Message(
            message_name=self.message_name,
            topic=self.topic,
            payload=loads(self.payload),
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

    Example::

        store.settle(token, OutboxSettlement(sent=(1, 2)), now=utcnow())
    """

    sent: Sequence[int] = ()
    retry: Sequence[tuple[int, datetime, str]] = ()
    dead: Sequence[tuple[int, str]] = ()
    release: Sequence[int] = ()


def _non_negative(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class OutboxRetryPolicy:
    """Exponential backoff between publish attempts of one row.

    The delay after the *n*-th failed attempt is
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``, stretched by a
    random factor in ``[1, 1 + jitter]`` so relays don't retry in lockstep.

    Attributes:
        initial_delay: seconds before the second attempt.
        multiplier: growth factor of the delay.
        max_delay: upper bound of the delay, in seconds.
        jitter: extra random fraction of the delay (0 disables it).

    Example::

        policy = OutboxRetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=60.0)
        assert policy.delay(3) == 2.0
    """

    initial_delay: float = attrs.field(default=1.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    max_delay: float = attrs.field(default=300.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts (``failures >= 1``)."""
        exponent = max(failures, 1) - 1
        try:
            base = self.initial_delay * self.multiplier**exponent
        except OverflowError:
            base = self.max_delay
        base = min(self.max_delay, base)
        if self.jitter:
            base *= 1.0 + random.random() * self.jitter
        return base

    def next_attempt(self, failures: int, now: datetime) -> datetime:
        """When to retry after ``failures`` failed attempts, seen at ``now``."""
        return now + timedelta(seconds=self.delay(failures))
