"""The RabbitMQ producer: `RabbitMQMessageBroker`, publisher confirms on one
connection thread, republishing what a lost connection left unconfirmed."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

import anyio
import pika.exceptions

from ..._retry import RetryPolicy
from ...codecs import MessageCodec
from ...errors import BrokerDeliveryError, BrokerError, ConnectionLost
from ...observability import _messaging, _tracing
from ...observability._metrics import ProducerMetrics
from .._message import Message
from ._connection import AmqpThread
from ._reconnect import PRODUCER_RECONNECT, reconnect
from ._wire import message_encoder

__all__ = ["RabbitMQMessageBroker"]


class _Batch:
    """One `send_many`: which messages the broker confirmed so far."""

    __slots__ = ("failures", "in_doubt", "messages", "next")

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.next = 0
        """Index of the first message without an answer from the broker."""
        self.in_doubt = False
        """`messages[next]` was sent and the connection died before the answer."""
        self.failures: list[tuple[str | None, str]] = []


class RabbitMQMessageBroker:
    """Publishes messages to a RabbitMQ exchange with publisher confirms;
    `send_message` returns once the broker confirmed the message.

    The routing key is the message's `topic`. Messages are persistent and
    published `mandatory`: a message no queue is bound for is reported as
    not delivered instead of vanishing.

    When the connection is lost (broker restart, connection closed by an
    operator, network error), the next publish — or the one that was under
    way — reconnects following `reconnect` (the exchange is declared again)
    and publishes what the broker had not confirmed yet. The message that was
    on the wire when the connection died may have reached the broker without
    its confirmation coming back, so it can be published twice (at-least-once;
    consumers deduplicate by `message_id`). Messages the broker confirmed
    are never published again. With `republish=False` the unconfirmed
    messages fail with `anycqrs.errors.BrokerDeliveryError` instead (the next
    publish still reconnects). Entering the broker while RabbitMQ is not up
    yet follows the same policy.

    Args:
        url: AMQP URL, e.g. `amqp://guest:guest@localhost:5672/%2F`.
        exchange: the exchange to publish to (`""`: the default exchange,
            where the routing key names the queue).
        exchange_type: declared when `declare_exchange` (default `topic`).
        declare_exchange: declare `exchange` (durable) on connect.
        mandatory: report unroutable messages as failures.
        reconnect: an `anycqrs.RetryPolicy`; the failed connection is its
            first attempt (default `RetryPolicy(attempts=9, delay=0.1,
            multiplier=2.0, max_delay=30.0)`: 8 reconnect attempts, ~25 s in
            all). Every attempt is logged at WARNING on the
            `anycqrs.brokers.rabbitmq` logger; bad credentials and a
            forbidden vhost are never retried. `None` does not reconnect
            (every publish raises `anycqrs.errors.BrokerError` until the
            broker is entered again).
        republish: publish unconfirmed messages again after reconnecting.
        connection_name: the `connection_name` client property (shown by
            the management UI and `rabbitmqctl list_connections`).
        codec: the body format (an `anycqrs.codecs.MessageCodec`; default
            JSON, `content_type` `application/json`).
        meter_provider: the OpenTelemetry meter provider for
            `messaging.client.sent.messages` and delivery failures (default:
            the global one, read on `async with`; see docs/metrics.md).
        tracer_provider: an OpenTelemetry `TracerProvider` for the
            `send` spans (default: the global one, read now; none set:
            no spans, the headers unchanged).

    Example:
        ```python
        async with RabbitMQMessageBroker(url, exchange="orders") as broker:
            await broker.send_message(Message.from_event(event))  # routing key: event.topic
            await broker.send_many([Message.from_event(e) for e in events])
        ```
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "",
        exchange_type: str = "topic",
        declare_exchange: bool = True,
        mandatory: bool = True,
        reconnect: RetryPolicy | None = PRODUCER_RECONNECT,
        republish: bool = True,
        connection_name: str | None = None,
        codec: MessageCodec | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
    ) -> None:
        self._wire = message_encoder(codec)
        self._tracer = _tracing.tracer(tracer_provider)
        self._exchange = exchange
        self._meter_provider = meter_provider
        self._metrics: ProducerMetrics | None = None
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
        self._sleep = anyio.sleep
        """How reconnect backoff waits (tests replace it)."""

    def _setup(self, channel: Any) -> None:
        if self._declare:
            channel.exchange_declare(self._exchange, self._exchange_type, durable=True)
        channel.confirm_delivery()

    async def __aenter__(self) -> RabbitMQMessageBroker:
        self._lock = anyio.Lock()
        self._metrics = ProducerMetrics.create(self._meter_provider, "rabbitmq")
        # a broker that is not up yet: the same backoff as a lost connection
        await reconnect(self._reconnect, self._name, self._thread.start, sleep=self._sleep)
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
        """Publish `message` and wait for the broker's confirmation.

        Raises:
            BrokerDeliveryError: the broker nacked it or could not route it,
                or the connection was lost and could not be restored.
            BrokerError: not connected (use `async with`).
        """
        await self.send_many((message,))

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Publish `messages` in order with one thread hop; each is confirmed.

        A lost connection is restored (see the class docs) and the
        unconfirmed rest of the batch published again.

        Raises:
            BrokerDeliveryError: some were not confirmed (`.failures`;
                `.delivered` counts the confirmed ones).
            BrokerError: not connected (use `async with`).
        """
        tracer = self._tracer
        if tracer is None:
            await self._send_many(list(messages))
            return
        sent, spans = _messaging.start_sends(
            tracer, "rabbitmq", list(messages), **{"messaging.rabbitmq.exchange": self._exchange}
        )
        error: BaseException | None = None
        try:
            await self._send_many(sent)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _messaging.end_sends(spans, error)

    async def _send_many(self, messages: list[Message]) -> None:
        batch = _Batch(messages)
        if not batch.messages:
            return
        metrics = self._metrics
        if metrics is None:
            await self._send(batch)
            return
        try:
            await self._send(batch)
        except BrokerDeliveryError as error:
            metrics.delivered(error.delivered, len(error.failures), None)
            raise
        metrics.delivered(len(batch.messages), 0, None)

    async def _send(self, batch: _Batch) -> None:
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
                    or (policy.attempts is not None and losses >= policy.attempts)
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

            await reconnect(policy, self._name, connect, lost=lost, sleep=self._sleep)

    def _publish(self, channel: Any, batch: _Batch) -> None:
        # `batch.next` moves past a message once the broker answered for it,
        # so a retry after a lost connection starts at the unconfirmed one
        messages, failures = batch.messages, batch.failures
        exchange, mandatory, wire = self._exchange, self._mandatory, self._wire
        while batch.next < len(messages):
            message = messages[batch.next]
            batch.in_doubt = True
            try:
                body, props = wire(message)
                channel.basic_publish(exchange, message.topic, body, props, mandatory=mandatory)
            except pika.exceptions.UnroutableError:
                failures.append((str(message.message_id), f"unroutable: {message.topic!r}"))
            except pika.exceptions.NackError:
                failures.append((str(message.message_id), "nacked by the broker"))
            batch.next += 1
            batch.in_doubt = False
