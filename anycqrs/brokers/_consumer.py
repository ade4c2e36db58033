"""What the Kafka and RabbitMQ consumers share: the retry policy, decoding a
wire message into a ``NotificationEvent``, and the *lanes* that feed an
``EventMediator`` with bounded concurrency and per-key ordering.

Lanes: a fixed number of long-lived tasks (the concurrency bound), each
handling its messages one after another. A message goes to the lane chosen by
its ordering key, so messages with one key are handled in order while
different keys run concurrently. Batches are handed over per lane (one stream
send per lane per batch); no task is spawned per message.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._exc import BaseExceptionGroup, real_errors
from ..errors import DeserializationError, MessageHandlingError
from ..serialization import converter, from_dict, loads

if TYPE_CHECKING:
    from ..events import EventMap, EventMediator

__all__ = ["ConsumerRetryPolicy"]

logger = logging.getLogger("anycqrs.brokers")


def _positive_int(_inst: Any, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attr.name} must be at least 1, got {value}")


def _non_negative(_inst: Any, attr: attrs.Attribute[float], value: float) -> None:
    if not value >= 0 or math.isnan(value):
        raise ValueError(f"{attr.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class ConsumerRetryPolicy:
    """How a consumer retries a message whose handler raised.

    The handler runs at most ``attempts`` times; before try *n + 1* the
    consumer sleeps ``min(delay * multiplier ** (n - 1), max_delay)`` seconds.
    Only exceptions that are instances of ``retry_on`` are retried; others go
    straight to the dead-letter destination. Messages that cannot be decoded
    are never retried.

    Example::

        policy = ConsumerRetryPolicy(attempts=5, delay=0.2, multiplier=2.0, max_delay=5.0,
                                     retry_on=(TimeoutError, ConnectionError))
        consumer = KafkaEventConsumer(config, ["orders"], mediator, retry=policy)
    """

    attempts: int = attrs.field(default=3, validator=_positive_int)
    """Total tries per message, the first included (``1`` = no retry)."""
    delay: float = attrs.field(default=0.1, validator=_non_negative)
    """Seconds before the first retry."""
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    """Factor applied to the delay after each retry."""
    max_delay: float = attrs.field(default=10.0, validator=_non_negative)
    """Upper bound of any single delay."""
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    """Exception types worth retrying."""

    def delays(self) -> Iterator[float]:
        """The delays before each retry, in order (``attempts - 1`` of them)."""
        delay = self.delay
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay)
            delay *= self.multiplier

    def should_retry(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another try."""
        return isinstance(error, self.retry_on)


NO_RETRY = ConsumerRetryPolicy(attempts=1)


class EventDecoder:
    """Builds the ``NotificationEvent[P]`` a wire message carries, routed by
    its event name; one per consumer.

    The bound class and its converter structure hook are looked up once per
    event name (the generic ``from_dict`` dispatch on ``NotificationEvent[P]``
    costs about as much as the structuring itself). A payload that does not
    fit is re-run through ``from_dict`` so the :class:`DeserializationError`
    names the offending fields.

    Example::

        decode = EventDecoder(mediator.event_map)
        event = decode(b'{"payload": {"order_id": 1}}', "OrderPaid", "orders", "1")
    """

    __slots__ = ("_event_map", "_hooks")

    def __init__(self, event_map: EventMap) -> None:
        self._event_map = event_map
        self._hooks: dict[str, tuple[Any, Callable[[Any, Any], Any]]] = {}

    def __call__(
        self, value: bytes | None, event_name: str | None, topic: str | None, key: str | None
    ) -> Any:
        """Decode one message.

        ``event_name`` comes from the transport headers; when absent the
        JSON's own ``event_name`` field is used. ``topic`` and ``key`` fill
        the JSON's missing fields.

        Raises:
            DeserializationError: empty or malformed JSON, no event name, or
                a payload that does not fit the bound class.
            UnknownEventName: nothing is bound under the name.
        """
        if value is None:
            raise DeserializationError("NotificationEvent", ["empty message value @ $"])
        data = loads(value)
        if not isinstance(data, dict):
            raise DeserializationError(
                "NotificationEvent", [f"expected a JSON object, got {type(data).__name__} @ $"]
            )
        if event_name is None:
            event_name = data.get("event_name")
            if not isinstance(event_name, str):
                raise DeserializationError(
                    "NotificationEvent", ["no event_name header and no event_name field @ $"]
                )
        if topic is not None and "topic" not in data:
            data["topic"] = topic
        if key is not None and "key" not in data:
            data["key"] = key
        cls = self._event_map.notification_type(event_name)
        entry = self._hooks.get(event_name)
        if entry is None or entry[0] is not cls:
            entry = self._hooks[event_name] = (cls, converter.get_structure_hook(cls))
        hook = entry[1]
        try:
            return hook(data, cls)
        except Exception:  # noqa: BLE001 - from_dict raises the descriptive error
            return from_dict(cls, data)


class Inbound:
    """One consumed message on its way through the lanes."""

    __slots__ = ("error", "event", "handled", "lane", "raw", "ticket")

    def __init__(
        self, event: Any, error: Exception | None, lane: int, raw: Any, ticket: Any = None
    ) -> None:
        self.event = event
        """The decoded event (``None`` when ``error`` is set)."""
        self.error = error
        """Why the message could not be decoded (a poison message)."""
        self.lane = lane
        """Ordering hash: messages with equal ``lane`` are handled in order."""
        self.raw = raw
        """The transport's message object."""
        self.ticket: Any = ticket
        """Transport bookkeeping (partition, delivery tag...)."""
        self.handled = False
        """Set by the transport once the message was handled (or dead-lettered)."""


class Transport(Protocol):
    """What a consumer tells the lanes about its transport."""

    def stale(self, item: Inbound) -> bool:
        """The message should be dropped unhandled (its partition was revoked)."""

    def done(self, items: Sequence[Inbound]) -> None:
        """These messages were handled (or dead-lettered): acknowledge them."""

    def location(self, item: Inbound) -> str:
        """Where the message came from, for logs and errors."""

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int) -> bool:
        """Move the message aside; False when no destination is configured."""


class Lanes:
    """Bounded, per-key ordered delivery of :class:`Inbound` to a mediator."""

    def __init__(
        self,
        mediator: EventMediator,
        transport: Transport,
        *,
        concurrency: int,
        retry: ConsumerRetryPolicy,
        buffer: int = 2,
        logger: logging.Logger = logger,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._send: Callable[[Any], Any] = mediator.send
        self._transport = transport
        self._retry = retry
        self._logger = logger
        self._count = concurrency
        self._buffer = buffer
        self._streams: list[MemoryObjectSendStream[list[Inbound]]] = []

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the lane tasks until cancelled (or a message fails for good)."""
        try:
            async with anyio.create_task_group() as group:
                for _ in range(self._count):
                    send, receive = anyio.create_memory_object_stream[list[Inbound]](self._buffer)
                    self._streams.append(send)
                    group.start_soon(self._lane, receive)
                task_status.started()
        except BaseExceptionGroup as failure:
            errors = real_errors(failure)
            if len(errors) == 1:
                raise errors[0] from None
            raise

    async def submit(self, items: Sequence[Inbound]) -> None:
        """Hand ``items`` to their lanes (waits while a lane's buffer is full)."""
        streams = self._streams
        count = len(streams)
        if count == 1:
            await streams[0].send(list(items))
            return
        chunks: list[list[Inbound]] = [[] for _ in range(count)]
        for item in items:
            chunks[item.lane % count].append(item)
        for stream, chunk in zip(streams, chunks, strict=True):
            if chunk:
                await stream.send(chunk)

    async def close(self) -> None:
        """Let the lanes finish what they were given, then end them."""
        for stream in self._streams:
            await stream.aclose()

    async def _lane(self, receive: MemoryObjectReceiveStream[list[Inbound]]) -> None:
        send, transport = self._send, self._transport
        stale, done = transport.stale, transport.done
        async with receive:
            async for chunk in receive:
                finished: list[Inbound] = []
                try:
                    for item in chunk:
                        if stale(item):
                            continue
                        if item.error is None:
                            try:
                                await send(item.event)
                            except Exception as exc:  # noqa: BLE001 - retried below
                                await self._failed(item, exc)
                        else:
                            await self._poison(item)
                        finished.append(item)
                finally:
                    if finished:
                        done(finished)
                await anyio.lowlevel.checkpoint()

    async def _failed(self, item: Inbound, error: Exception) -> None:
        attempts = 1
        if self._retry.should_retry(error):
            for delay in self._retry.delays():
                self._logger.info(
                    "Handler failed for %s (attempt %d): %r; retrying in %.3gs",
                    self._transport.location(item),
                    attempts,
                    error,
                    delay,
                )
                await anyio.sleep(delay)
                attempts += 1
                try:
                    await self._send(item.event)
                except Exception as exc:  # noqa: BLE001 - retried or dead-lettered
                    error = exc
                    if not self._retry.should_retry(error):
                        break
                else:
                    return
        location = self._transport.location(item)
        if await self._transport.dead_letter(item, error, attempts):
            self._logger.error(
                "Handler failed for %s after %d attempt(s); dead-lettered",
                location,
                attempts,
                exc_info=error,
            )
            return
        raise MessageHandlingError(location, attempts, error) from error

    async def _poison(self, item: Inbound) -> None:
        error = item.error
        assert error is not None
        location = self._transport.location(item)
        dead = await self._transport.dead_letter(item, error, 0)
        self._logger.error(
            "Cannot decode the message at %s (%s); %s",
            location,
            error,
            "dead-lettered" if dead else "skipped (no dead-letter destination)",
        )
