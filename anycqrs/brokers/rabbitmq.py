"""RabbitMQ: a producer (:class:`RabbitMQMessageBroker`) and a consumer runner
(:class:`RabbitMQEventConsumer`) on pika's blocking connection, each owning a
dedicated connection thread (pika is not thread-safe).

Install the ``rabbitmq`` extra: ``pip install anycqrs[rabbitmq]``.

Wire format: body = JSON of ``to_dict(event)``, ``content_type``
``application/json``, ``type`` and header ``event_name`` = the event name,
``message_id`` = the event id, header ``key`` = the event's key (the
consumer's ordering key), plus the event's own headers; persistent.

Example::

    async with RabbitMQMessageBroker("amqp://guest:guest@localhost/%2F",
                                     exchange="orders") as broker:
        await broker.send_message(Message.from_event(event))  # routing key = event.topic
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import attrs
import pika
import pika.exceptions

from .._exc import BaseExceptionGroup, real_errors
from ..errors import BrokerDeliveryError, BrokerError, DeserializationError
from ..events import EventMediator
from ..serialization import dumps
from ._amqp import AmqpThread, ConnectionLost
from ._consumer import ConsumerRetryPolicy, EventDecoder, Inbound, Lanes
from ._message import Message

__all__ = [
    "ConsumerRetryPolicy",
    "RabbitMQEventConsumer",
    "RabbitMQMessageBroker",
    "ReconnectPolicy",
]

logger = logging.getLogger("anycqrs.brokers.rabbitmq")

_PERSISTENT = 2


def _non_negative(_inst: Any, attr: attrs.Attribute[float], value: float) -> None:
    if not value >= 0 or math.isnan(value):
        raise ValueError(f"{attr.name} must be >= 0, got {value}")


def _attempts(_inst: Any, attr: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attr.name} must be at least 1 or None, got {value}")


@attrs.frozen(kw_only=True)
class ReconnectPolicy:
    """How a RabbitMQ producer or consumer reconnects after losing its
    connection (broker restart, ``rabbitmqctl close_connection``, network
    error), and how it retries its first connection to a broker that is not
    up yet. Authentication and access failures are never retried.

    Before reconnect attempt *n* it waits
    ``min(initial_delay * multiplier ** (n - 1), max_delay)`` seconds; after
    ``max_attempts`` failed attempts (``None``: never give up) it raises
    :class:`~anycqrs.errors.BrokerError`. Every attempt is logged at WARNING
    on the ``anycqrs.brokers.rabbitmq`` logger.

    Example::

        consumer = RabbitMQEventConsumer(
            url, "shipping", mediator,
            reconnect=ReconnectPolicy(initial_delay=0.5, max_delay=30.0, max_attempts=None),
        )
    """

    initial_delay: float = attrs.field(default=0.1, validator=_non_negative)
    """Seconds before the first reconnect attempt."""
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    """Factor applied to the delay after each failed attempt."""
    max_delay: float = attrs.field(default=30.0, validator=_non_negative)
    """Upper bound of any single delay."""
    max_attempts: int | None = attrs.field(default=None, validator=_attempts)
    """Connection attempts before giving up; ``None`` retries forever."""

    def delays(self) -> Iterator[float]:
        """The delay before each attempt, in order (endless without ``max_attempts``)."""
        delay = self.initial_delay
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            attempt += 1
            yield min(delay, self.max_delay)
            delay *= self.multiplier


#: The producer's default: a publish waits at most ~25 s for a new connection.
PRODUCER_RECONNECT = ReconnectPolicy(max_attempts=8)
#: The consumer's default: reconnect forever, at most 30 s apart.
CONSUMER_RECONNECT = ReconnectPolicy()

_NOT_RETRIED = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
    pika.exceptions.AuthenticationError,
)
"""Connection failures another attempt cannot fix (credentials, vhost)."""


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ConnectionLost) and not isinstance(error.__cause__, _NOT_RETRIED)


async def _connect_with_backoff(
    policy: ReconnectPolicy,
    name: str,
    error: BaseException,
    connect: Callable[[], Awaitable[None]],
    *,
    what: str = "connection lost",
) -> None:
    """Call ``connect`` after each of ``policy``'s delays until it succeeds;
    raise :class:`BrokerError` when the policy gives up or the failure is
    not worth retrying (bad credentials or vhost)."""
    attempt = 0
    for delay in policy.delays():
        attempt += 1
        logger.warning(
            "%s: %s (%s); reconnecting in %.3gs (attempt %d%s)",
            name,
            what,
            error,
            delay,
            attempt,
            f" of {policy.max_attempts}" if policy.max_attempts is not None else "",
        )
        await anyio.sleep(delay)
        try:
            await connect()
        except ConnectionLost as exc:
            error = exc
            if not _retryable(exc):
                break
            continue
        logger.warning("%s: reconnected (attempt %d)", name, attempt)
        return
    raise BrokerError(f"{name}: cannot reconnect after {attempt} attempt(s): {error}") from error


class _Batch:
    """One ``send_many``: which messages the broker confirmed so far."""

    __slots__ = ("failures", "in_doubt", "messages", "next")

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.next = 0
        """Index of the first message without an answer from the broker."""
        self.in_doubt = False
        """``messages[next]`` was sent and the connection died before the answer."""
        self.failures: list[tuple[str | None, str]] = []


def _properties(message: Message) -> Any:
    headers: dict[str, Any] = dict(message.headers)
    headers["event_name"] = message.message_name
    if message.key is not None:
        headers["key"] = message.key
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=_PERSISTENT,
        message_id=str(message.message_id),
        type=message.message_name,
        headers=headers,
    )


class RabbitMQMessageBroker:
    """Publishes messages to a RabbitMQ exchange with publisher confirms;
    ``send_message`` returns once the broker confirmed the message.

    The routing key is the message's ``topic``. Messages are persistent and
    published ``mandatory``: a message no queue is bound for is reported as
    not delivered instead of vanishing.

    When the connection is lost (broker restart, connection closed by an
    operator, network error), the next publish — or the one that was under
    way — reconnects following ``reconnect`` (the exchange is declared again)
    and publishes what the broker had not confirmed yet. The message that was
    on the wire when the connection died may have reached the broker without
    its confirmation coming back, so it can be published twice (at-least-once;
    consumers deduplicate by ``message_id``). Messages the broker confirmed
    are never published again. With ``republish=False`` the unconfirmed
    messages fail with :class:`~anycqrs.errors.BrokerDeliveryError` instead
    (the next publish still reconnects).

    Args:
        url: AMQP URL, e.g. ``amqp://guest:guest@localhost:5672/%2F``.
        exchange: the exchange to publish to (``""``: the default exchange,
            where the routing key names the queue).
        exchange_type: declared when ``declare_exchange`` (default ``topic``).
        declare_exchange: declare ``exchange`` (durable) on connect.
        mandatory: report unroutable messages as failures.
        reconnect: the :class:`ReconnectPolicy` (default: 8 attempts,
            0.1 s doubling, ~25 s in all); ``None`` does not reconnect (every
            publish raises :class:`~anycqrs.errors.BrokerError` until the
            broker is entered again).
        republish: publish unconfirmed messages again after reconnecting.
        connection_name: the ``connection_name`` client property (shown by
            the management UI and ``rabbitmqctl list_connections``).

    Example::

        async with RabbitMQMessageBroker(url, exchange="orders") as broker:
            await broker.send_many([Message.from_event(e) for e in events])
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "",
        exchange_type: str = "topic",
        declare_exchange: bool = True,
        mandatory: bool = True,
        reconnect: ReconnectPolicy | None = PRODUCER_RECONNECT,
        republish: bool = True,
        connection_name: str | None = None,
    ) -> None:
        self._exchange = exchange
        self._exchange_type = exchange_type
        self._declare = declare_exchange and exchange != ""
        self._mandatory = mandatory
        self._reconnect = reconnect
        self._republish = republish
        self._name = f"RabbitMQMessageBroker({exchange!r})"
        self._thread = AmqpThread(
            url,
            self._setup,
            name=self._name,
            client_properties={"connection_name": connection_name or f"anycqrs {self._name}"},
        )
        self._entered = False
        self._generation = 0
        self._lock: anyio.Lock | None = None

    def _setup(self, channel: Any) -> None:
        if self._declare:
            channel.exchange_declare(self._exchange, self._exchange_type, durable=True)
        channel.confirm_delivery()

    async def __aenter__(self) -> RabbitMQMessageBroker:
        self._lock = anyio.Lock()
        try:
            await self._thread.start()
        except ConnectionLost as error:
            # a broker that is not up yet: the same backoff as a lost connection
            if self._reconnect is None or not _retryable(error):
                raise
            await _connect_with_backoff(
                self._reconnect, self._name, error, self._thread.start, what="cannot connect"
            )
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        await self._thread.stop()

    async def send_message(self, message: Message, /) -> None:
        """Publish ``message`` and wait for the broker's confirmation.

        Raises:
            BrokerDeliveryError: the broker nacked it or could not route it,
                or the connection was lost and could not be restored.
            BrokerError: not connected (use ``async with``).
        """
        await self.send_many((message,))

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Publish ``messages`` in order with one thread hop; each is confirmed.

        A lost connection is restored (see the class docs) and the
        unconfirmed rest of the batch published again.

        Raises:
            BrokerDeliveryError: some were not confirmed (``.failures``;
                ``.delivered`` counts the confirmed ones).
            BrokerError: not connected (use ``async with``).
        """
        batch = _Batch(list(messages))
        if not batch.messages:
            return
        losses = 0
        while True:
            generation = self._generation
            try:
                await self._thread.call(lambda channel: self._publish(channel, batch))
                break
            except ConnectionLost as lost:
                if not self._entered:
                    raise
                losses += 1
                policy = self._reconnect
                if (
                    policy is None
                    or (batch.in_doubt and not self._republish)
                    or (policy.max_attempts is not None and losses > policy.max_attempts)
                ):
                    self._give_up(batch, lost)
                batch.in_doubt = False
                try:
                    await self._restore(generation, lost)
                except BrokerError as error:
                    self._give_up(batch, error)
        if batch.failures:
            raise BrokerDeliveryError(
                batch.failures,
                len(batch.messages) - len(batch.failures),
                what=f"exchange {self._exchange!r}",
            )

    def _give_up(self, batch: _Batch, error: BrokerError) -> None:
        reason = f"connection lost before the broker confirmed it: {error}"
        failures = [*batch.failures]
        failures.extend((str(m.message_id), reason) for m in batch.messages[batch.next :])
        raise BrokerDeliveryError(
            failures, len(batch.messages) - len(failures), what=f"exchange {self._exchange!r}"
        ) from error

    async def _restore(self, generation: int, lost: BaseException) -> None:
        """Reconnect unless another publish already did (one at a time)."""
        policy, lock = self._reconnect, self._lock
        assert policy is not None and lock is not None
        async with lock:
            if self._generation != generation and self._thread.alive:
                return
            await self._thread.stop()

            async def connect() -> None:
                if not self._entered:
                    raise BrokerError(f"{self._name}: closed while reconnecting") from lost
                await self._thread.start()
                self._generation += 1

            await _connect_with_backoff(policy, self._name, lost, connect)

    def _publish(self, channel: Any, batch: _Batch) -> None:
        # ``batch.next`` moves past a message once the broker answered for it,
        # so a retry after a lost connection starts at the unconfirmed one
        messages, failures = batch.messages, batch.failures
        exchange, mandatory = self._exchange, self._mandatory
        while batch.next < len(messages):
            message = messages[batch.next]
            batch.in_doubt = True
            try:
                channel.basic_publish(
                    exchange,
                    message.topic,
                    dumps(message.payload),
                    _properties(message),
                    mandatory=mandatory,
                )
            except pika.exceptions.UnroutableError:
                failures.append((str(message.message_id), f"unroutable: {message.topic!r}"))
            except pika.exceptions.NackError:
                failures.append((str(message.message_id), "nacked by the broker"))
            batch.next += 1
            batch.in_doubt = False


class RabbitMQEventConsumer:
    """Consumes notification events from a RabbitMQ queue and feeds them to an
    :class:`~anycqrs.EventMediator`, at least once: a message is acked only
    after the mediator handled it (or it was dead-lettered).

    Same contract as :class:`~anycqrs.brokers.kafka.KafkaEventConsumer`:
    routing by ``event_name`` (the ``event_name`` header, else the AMQP
    ``type``, else the JSON field); ``prefetch`` is the bound on unacked
    messages and ``max_concurrency`` on handlers running at once; messages
    with one ``key`` header are handled in order; failures are retried by
    ``retry`` and then published to ``dead_letter_exchange`` (body and
    headers kept, ``anycqrs.error.*`` headers added) and acked. Without a
    dead-letter exchange a message that keeps failing stops the consumer
    with :class:`~anycqrs.errors.MessageHandlingError` (unacked, so RabbitMQ
    redelivers it); undecodable messages are logged and acked. Cancelling
    :meth:`run` stops it: finished messages are acked, the rest return to
    the queue when the channel closes.

    A lost connection does not stop it: it reconnects following
    ``reconnect`` (logged at WARNING), declares its queue, bindings and
    dead-letter exchange again and resumes consuming. Messages that were
    unacked on the lost channel are redelivered by RabbitMQ: the ones not
    started yet are dropped unhandled, handlers already running finish, and
    no ack goes to the new channel for a delivery of the old one — so a
    message handled just before the loss is handled again (a duplicate
    within at-least-once).

    Args:
        url: AMQP URL.
        queue: the queue to consume (declared durable when ``declare_queue``).
        mediator: the :class:`~anycqrs.EventMediator` that handles events.
        bindings: ``(exchange, routing_key)`` pairs to bind the queue to
            (the exchanges are declared as durable ``topic`` exchanges).
        prefetch: most unacked messages in flight (``basic_qos``).
        max_concurrency: most handlers running at once (default: ``prefetch``).
        retry: the :class:`ConsumerRetryPolicy`.
        dead_letter_exchange: where failed and undecodable messages go
            (declared as a durable ``topic`` exchange).
        dead_letter_routing_key: routing key for them (default: the queue).
        reconnect: the :class:`ReconnectPolicy` (default: forever, 0.1 s
            doubling up to 30 s); ``None``: a lost connection ends
            :meth:`run` with :class:`~anycqrs.errors.BrokerError`.
        connection_name: the ``connection_name`` client property (shown by
            the management UI and ``rabbitmqctl list_connections``).

    Example::

        consumer = RabbitMQEventConsumer(url, "shipping", mediator,
                                         bindings=[("orders", "orders.#")],
                                         dead_letter_exchange="orders.dlx")
        async with anyio.create_task_group() as tg:
            await tg.start(consumer.run)
    """

    def __init__(
        self,
        url: str,
        queue: str,
        mediator: EventMediator,
        *,
        bindings: Sequence[tuple[str, str]] = (),
        declare_queue: bool = True,
        prefetch: int = 64,
        max_concurrency: int | None = None,
        retry: ConsumerRetryPolicy | None = None,
        dead_letter_exchange: str | None = None,
        dead_letter_routing_key: str | None = None,
        poll_interval: float = 0.2,
        reconnect: ReconnectPolicy | None = CONSUMER_RECONNECT,
        connection_name: str | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self._url = url
        self._queue = queue
        self._mediator = mediator
        self._decode = EventDecoder(mediator.event_map)
        self._bindings = list(bindings)
        self._declare_queue = declare_queue
        self._prefetch = prefetch
        self._concurrency = max_concurrency if max_concurrency is not None else prefetch
        self._retry = retry if retry is not None else ConsumerRetryPolicy()
        self._dlx = dead_letter_exchange
        self._dlx_key = dead_letter_routing_key if dead_letter_routing_key is not None else queue
        self._poll_interval = poll_interval
        self._reconnect = reconnect
        self._name = f"RabbitMQEventConsumer({queue!r})"
        self._client_properties = {"connection_name": connection_name or f"anycqrs {self._name}"}
        self._arrived: list[Inbound] = []
        # (connection generation, delivery tag) of handled messages to ack
        self._acks: deque[tuple[int, int]] = deque()
        self._inbox: list[Inbound] = []
        self._wakeup = anyio.Event()
        self._ended = False
        self._generation = 0
        self._live: int | None = None
        """Generation of the open connection (``None`` while there is none)."""
        self._thread: AmqpThread | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Consume until cancelled (or a message fails for good).

        Raises:
            MessageHandlingError: a handler kept failing and no dead-letter
                exchange is configured.
            BrokerError: cannot connect; or the connection was lost and
                ``reconnect`` gave up (or is ``None``).
        """
        self._token = anyio.lowlevel.current_token()
        self._wakeup = anyio.Event()
        try:
            try:
                await self._connect()
            except ConnectionLost as error:
                # a broker that is not up yet: the same backoff as a lost connection
                if self._reconnect is None or not _retryable(error):
                    raise
                await _connect_with_backoff(
                    self._reconnect, self._name, error, self._connect, what="cannot connect"
                )
            lanes = Lanes(self._mediator, self, concurrency=self._concurrency, retry=self._retry)
            async with anyio.create_task_group() as group:
                await group.start(lanes.run)
                task_status.started()
                while True:
                    await self._wakeup.wait()
                    self._wakeup = anyio.Event()
                    items, self._inbox = self._inbox, []
                    if items:
                        await lanes.submit(items)
                    if self._ended:
                        await self._reconnect_now()
        except BaseExceptionGroup as failure:
            errors = real_errors(failure)
            if len(errors) == 1:
                raise errors[0] from None
            raise
        finally:
            with anyio.CancelScope(shield=True):
                thread, generation = self._thread, self._live
                self._live = None
                if thread is not None:
                    if thread.alive and generation is not None:
                        with anyio.move_on_after(10):
                            try:
                                await thread.call(
                                    lambda channel: self._flush_acks(generation, channel)
                                )
                            except ConnectionLost:
                                pass  # unacked: redelivered
                    await thread.stop()
                    self._thread = None

    async def _connect(self) -> None:
        """Open a new connection (a new generation) and start consuming."""
        self._generation += 1
        generation = self._generation
        self._arrived.clear()
        self._ended = False
        thread = AmqpThread(
            self._url,
            lambda channel: self._setup(generation, channel),
            after_poll=lambda channel: self._after_poll(generation, channel),
            on_exit=lambda: self._on_exit(generation),
            poll_interval=self._poll_interval,
            name=self._name,
            client_properties=self._client_properties,
        )
        await thread.start()
        self._thread = thread
        self._live = generation

    async def _reconnect_now(self) -> None:
        """The connection is gone: reconnect with backoff, or raise."""
        thread = self._thread
        assert thread is not None
        lost: BaseException = thread.failure or ConnectionLost("the connection closed")
        self._live = None
        await thread.stop()
        self._thread = None
        policy = self._reconnect
        if policy is None:
            raise BrokerError(f"{self._name}: RabbitMQ connection lost: {lost}") from lost
        await _connect_with_backoff(policy, self._name, lost, self._connect)

    # -- connection thread ------------------------------------------------------

    def _setup(self, generation: int, channel: Any) -> None:
        if self._declare_queue:
            channel.queue_declare(self._queue, durable=True)
        for exchange, routing_key in self._bindings:
            channel.exchange_declare(exchange, "topic", durable=True)
            channel.queue_bind(self._queue, exchange, routing_key)
        if self._dlx is not None:
            channel.exchange_declare(self._dlx, "topic", durable=True)
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=self._prefetch)

        def on_message(_channel: Any, method: Any, properties: Any, body: bytes) -> None:
            self._on_message(generation, method, properties, body)

        channel.basic_consume(self._queue, on_message)

    def _on_message(self, generation: int, method: Any, properties: Any, body: bytes) -> None:
        headers = properties.headers or {}
        name = headers.get("event_name") or properties.type
        key = headers.get("key")
        error: Exception | None = None
        event: Any = None
        try:
            event = self._decode(
                body,
                name if isinstance(name, str) else None,
                method.routing_key,
                key if isinstance(key, str) else None,
            )
        except DeserializationError as exc:
            error = exc
        lane = hash(key) if key is not None else method.delivery_tag
        item = Inbound(event, error, lane, (method, properties, body))
        item.ticket = (generation, method.delivery_tag)
        self._arrived.append(item)

    def _after_poll(self, generation: int, channel: Any) -> None:
        self._flush_acks(generation, channel)
        if self._arrived:
            arrived, self._arrived = self._arrived, []
            try:
                anyio.from_thread.run_sync(self._deliver, arrived, token=self._token)
            except anyio.RunFinishedError:  # pragma: no cover - loop gone
                pass

    def _flush_acks(self, generation: int, channel: Any) -> None:
        acks = self._acks
        stale = 0
        while acks:
            acked_generation, tag = acks.popleft()
            if acked_generation == generation:
                channel.basic_ack(tag)
            else:  # a delivery of a lost channel: RabbitMQ redelivers it
                stale += 1
        if stale:
            logger.info(
                "%s: %d message(s) handled before the connection was lost were not "
                "acked; RabbitMQ redelivers them",
                self._name,
                stale,
            )

    def _on_exit(self, generation: int) -> None:
        try:
            anyio.from_thread.run_sync(self._ended_now, generation, token=self._token)
        except anyio.RunFinishedError:  # pragma: no cover - loop gone
            pass

    # -- event-loop side ------------------------------------------------------------

    def _deliver(self, items: list[Inbound]) -> None:
        self._inbox.extend(items)
        self._wakeup.set()

    def _ended_now(self, generation: int) -> None:
        if generation == self._live:
            self._live = None
            self._ended = True
            self._wakeup.set()

    def stale(self, item: Inbound) -> bool:
        """Delivered on a connection that is gone: RabbitMQ redelivers it (internal)."""
        return bool(item.ticket[0] != self._live)

    def done(self, items: Sequence[Inbound]) -> None:
        """Ack handled messages (internal)."""
        self._acks.extend(item.ticket for item in items)
        thread = self._thread
        if thread is not None:
            thread.wake()

    def location(self, item: Inbound) -> str:
        """``queue#delivery_tag`` (internal)."""
        return f"{self._queue}#{item.ticket[1]}"

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int) -> bool:
        """Publish the message to the dead-letter exchange (internal)."""
        thread, dlx = self._thread, self._dlx
        if dlx is None:
            return False
        if thread is None or self.stale(item):
            self._not_dead_lettered(item)
            return True  # not acked either: redelivered, tried again
        method, properties, body = item.raw
        headers = dict(properties.headers or {})
        headers.update(
            {
                "anycqrs.error.type": type(error).__qualname__,
                "anycqrs.error.message": str(error)[:4000],
                "anycqrs.original.queue": self._queue,
                "anycqrs.original.routing_key": method.routing_key,
                "anycqrs.attempts": attempts,
            }
        )
        dead = pika.BasicProperties(
            content_type=properties.content_type,
            delivery_mode=_PERSISTENT,
            message_id=properties.message_id,
            type=properties.type,
            headers=headers,
        )
        routing_key = self._dlx_key

        def publish(channel: Any) -> None:
            channel.basic_publish(dlx, routing_key, body, dead)

        try:
            await thread.call(publish)
        except ConnectionLost:
            self._not_dead_lettered(item)
        return True

    def _not_dead_lettered(self, item: Inbound) -> None:
        logger.warning(
            "%s: connection lost before %s could be dead-lettered; "
            "RabbitMQ redelivers it (it is handled again, not dead-lettered)",
            self._name,
            self.location(item),
        )
