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
from collections import deque
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import pika
import pika.exceptions

from .._exc import BaseExceptionGroup, real_errors
from ..errors import BrokerDeliveryError, BrokerError, DeserializationError
from ..events import EventMediator
from ..serialization import _dumps
from ._amqp import AmqpThread
from ._consumer import ConsumerRetryPolicy, Inbound, Lanes, decode_event
from ._message import Message

__all__ = ["ConsumerRetryPolicy", "RabbitMQEventConsumer", "RabbitMQMessageBroker"]

logger = logging.getLogger("anycqrs.brokers.rabbitmq")

_PERSISTENT = 2


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

    Args:
        url: AMQP URL, e.g. ``amqp://guest:guest@localhost:5672/%2F``.
        exchange: the exchange to publish to (``""``: the default exchange,
            where the routing key names the queue).
        exchange_type: declared when ``declare_exchange`` (default ``topic``).
        declare_exchange: declare ``exchange`` (durable) on connect.
        mandatory: report unroutable messages as failures.

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
    ) -> None:
        self._exchange = exchange
        self._exchange_type = exchange_type
        self._declare = declare_exchange and exchange != ""
        self._mandatory = mandatory
        self._thread = AmqpThread(url, self._setup, name="RabbitMQMessageBroker")

    def _setup(self, channel: Any) -> None:
        if self._declare:
            channel.exchange_declare(self._exchange, self._exchange_type, durable=True)
        channel.confirm_delivery()

    async def __aenter__(self) -> RabbitMQMessageBroker:
        await self._thread.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._thread.stop()

    async def send_message(self, message: Message, /) -> None:
        """Publish ``message`` and wait for the broker's confirmation.

        Raises:
            BrokerDeliveryError: the broker nacked it or could not route it.
            BrokerError: not connected (use ``async with``).
        """
        await self.send_many((message,))

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Publish ``messages`` in order with one thread hop; each is confirmed.

        Raises:
            BrokerDeliveryError: some were not confirmed (``.failures``).
        """
        batch = list(messages)
        if not batch:
            return
        failures: list[tuple[str | None, str]] = await self._thread.call(
            lambda channel: self._publish(channel, batch)
        )
        if failures:
            raise BrokerDeliveryError(
                failures, len(batch) - len(failures), what=f"exchange {self._exchange!r}"
            )

    def _publish(self, channel: Any, batch: Sequence[Message]) -> list[tuple[str | None, str]]:
        failures: list[tuple[str | None, str]] = []
        for message in batch:
            try:
                channel.basic_publish(
                    self._exchange,
                    message.topic,
                    _dumps(message.payload),
                    _properties(message),
                    mandatory=self._mandatory,
                )
            except pika.exceptions.UnroutableError:
                failures.append((str(message.message_id), f"unroutable: {message.topic!r}"))
            except pika.exceptions.NackError:
                failures.append((str(message.message_id), "nacked by the broker"))
        return failures


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
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self._url = url
        self._queue = queue
        self._mediator = mediator
        self._event_map = mediator.event_map
        self._bindings = list(bindings)
        self._declare_queue = declare_queue
        self._prefetch = prefetch
        self._concurrency = max_concurrency if max_concurrency is not None else prefetch
        self._retry = retry if retry is not None else ConsumerRetryPolicy()
        self._dlx = dead_letter_exchange
        self._dlx_key = dead_letter_routing_key if dead_letter_routing_key is not None else queue
        self._poll_interval = poll_interval
        self._arrived: list[Inbound] = []
        self._acks: deque[int] = deque()
        self._inbox: list[Inbound] = []
        self._wakeup = anyio.Event()
        self._ended = False
        self._thread: AmqpThread | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Consume until cancelled (or a message fails for good).

        Raises:
            MessageHandlingError: a handler kept failing and no dead-letter
                exchange is configured.
            BrokerError: cannot connect, or the connection was lost.
        """
        self._token = anyio.lowlevel.current_token()
        self._ended = False
        self._wakeup = anyio.Event()
        thread = self._thread = AmqpThread(
            self._url,
            self._setup,
            after_poll=self._after_poll,
            on_exit=self._on_exit,
            poll_interval=self._poll_interval,
            name="RabbitMQEventConsumer",
        )
        await thread.start()
        try:
            lanes = Lanes(self._mediator, self, concurrency=self._concurrency, retry=self._retry)
            async with anyio.create_task_group() as group:
                await group.start(lanes.run)
                task_status.started()
                while True:
                    await self._wakeup.wait()
                    self._wakeup = anyio.Event()
                    if self._ended:
                        raise BrokerError(f"RabbitMQ connection lost: {thread.failure}")
                    items, self._inbox = self._inbox, []
                    if items:
                        await lanes.submit(items)
        except BaseExceptionGroup as failure:
            errors = real_errors(failure)
            if len(errors) == 1:
                raise errors[0] from None
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if thread.alive:
                    with anyio.move_on_after(10):
                        await thread.call(self._flush_acks)
                await thread.stop()
                self._thread = None

    # -- connection thread ------------------------------------------------------

    def _setup(self, channel: Any) -> None:
        if self._declare_queue:
            channel.queue_declare(self._queue, durable=True)
        for exchange, routing_key in self._bindings:
            channel.exchange_declare(exchange, "topic", durable=True)
            channel.queue_bind(self._queue, exchange, routing_key)
        if self._dlx is not None:
            channel.exchange_declare(self._dlx, "topic", durable=True)
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=self._prefetch)
        channel.basic_consume(self._queue, self._on_message)

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        headers = properties.headers or {}
        name = headers.get("event_name") or properties.type
        key = headers.get("key")
        error: Exception | None = None
        event: Any = None
        try:
            event = decode_event(
                self._event_map,
                body,
                name if isinstance(name, str) else None,
                {"topic": method.routing_key, "key": key if isinstance(key, str) else None},
            )
        except DeserializationError as exc:
            error = exc
        lane = hash(key) if key is not None else method.delivery_tag
        item = Inbound(event, error, lane, (method, properties, body))
        item.ticket = method.delivery_tag
        self._arrived.append(item)

    def _after_poll(self, channel: Any) -> None:
        self._flush_acks(channel)
        if self._arrived:
            arrived, self._arrived = self._arrived, []
            try:
                anyio.from_thread.run_sync(self._deliver, arrived, token=self._token)
            except anyio.RunFinishedError:  # pragma: no cover - loop gone
                pass

    def _flush_acks(self, channel: Any) -> None:
        acks = self._acks
        while acks:
            channel.basic_ack(acks.popleft())

    def _on_exit(self) -> None:
        try:
            anyio.from_thread.run_sync(self._ended_now, token=self._token)
        except anyio.RunFinishedError:  # pragma: no cover - loop gone
            pass

    # -- event-loop side ------------------------------------------------------------

    def _deliver(self, items: list[Inbound]) -> None:
        self._inbox.extend(items)
        self._wakeup.set()

    def _ended_now(self) -> None:
        self._ended = True
        self._wakeup.set()

    def stale(self, item: Inbound) -> bool:
        """Never: RabbitMQ redelivers unacked messages itself (internal)."""
        return False

    def done(self, items: Sequence[Inbound]) -> None:
        """Ack handled messages (internal)."""
        self._acks.extend(item.ticket for item in items)
        thread = self._thread
        if thread is not None:
            thread.wake()

    def location(self, item: Inbound) -> str:
        """``queue#delivery_tag`` (internal)."""
        return f"{self._queue}#{item.ticket}"

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int) -> bool:
        """Publish the message to the dead-letter exchange (internal)."""
        thread, dlx = self._thread, self._dlx
        if dlx is None or thread is None:
            return False
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

        await thread.call(publish)
        return True
