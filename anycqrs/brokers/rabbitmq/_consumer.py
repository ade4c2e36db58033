"""The RabbitMQ consumer: a transport over the public consumer layer.

`RabbitMQEventConsumer` holds the settings; each `run` builds a `_Run` (the
transport of that run: the connection thread, its deliveries and acks,
reconnecting when the connection is lost) and hands it to
`anycqrs.consumers.consume`, which feeds the event sink through the lanes."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import attrs

from ..._retry import RetryPolicy, Sleep
from ...codecs import MessageCodec
from ...consumers import DEFAULT_RETRY, EventDecoder, EventSink, Inbound, consume
from ...errors import ConnectionLost
from ...observability._health import ConsumerProbe, HealthCheck
from ...observability._metrics import ConsumerMetrics
from ._connection import AmqpThread
from ._reconnect import CONSUMER_RECONNECT, reconnect
from ._wire import dead_letter_properties, name_and_key

__all__ = ["RabbitMQEventConsumer"]

logger = logging.getLogger("anycqrs.brokers.rabbitmq")

_Delivery = tuple[int, Any, Any, bytes, str | None, str | None]
"""A message as received: generation, method, properties, body, event name, key."""


@attrs.frozen
class _Settings:
    """What every run of one consumer connects with."""

    url: str
    queue: str
    bindings: tuple[tuple[str, str], ...]
    declare_queue: bool
    prefetch: int
    dlx: str | None
    dlx_key: str
    poll_interval: float
    reconnect: RetryPolicy | None
    name: str
    client_properties: dict[str, Any]


class RabbitMQEventConsumer:
    """Consumes notification events from a RabbitMQ queue and feeds them to an
    event sink (an `anycqrs.EventMediator`), at least once: a message is acked
    only after the sink handled it (or it was dead-lettered). It is a
    transport over `anycqrs.consumers` (lanes, retries, poison, dead letters).

    Same contract as `anycqrs.brokers.kafka.KafkaEventConsumer`: routing by
    `event_name` (the `event_name` header, else the AMQP `type`, else the
    JSON field); `prefetch` is the bound on unacked messages and
    `max_concurrency` on handlers running at once; messages with one `key`
    header are handled in order; failures are retried by `retry` and then
    published to `dead_letter_exchange` (body and headers kept,
    `anycqrs.error.*` headers added) and acked. Without a dead-letter exchange
    a message that keeps failing stops the consumer with
    `anycqrs.errors.MessageHandlingError` (unacked, so RabbitMQ redelivers
    it); undecodable messages are logged and acked. Cancelling `run` stops
    it: finished messages are acked, the rest return to the queue when the
    channel closes. One consumer object may `run` again after a run ended.

    A lost connection does not stop it: it reconnects following `reconnect`
    (logged at WARNING), declares its queue, bindings and dead-letter exchange
    again and resumes consuming. Messages that were unacked on the lost
    channel are redelivered by RabbitMQ: the ones not started yet are dropped
    unhandled, handlers already running finish, and no ack goes to the new
    channel for a delivery of the old one — so a message handled just before
    the loss is handled again (a duplicate within at-least-once).

    Args:
        url: AMQP URL.
        queue: the queue to consume (declared durable when `declare_queue`).
        mediator: the event sink that handles events: an
            `anycqrs.EventMediator`, or any `anycqrs.consumers.EventSink`.
        bindings: `(exchange, routing_key)` pairs to bind the queue to (the
            exchanges are declared as durable `topic` exchanges).
        declare_queue: declare `queue` on every connect.
        prefetch: most unacked messages in flight (`basic_qos`).
        max_concurrency: most handlers running at once (default: `prefetch`).
        retry: an `anycqrs.RetryPolicy` for a failing handler (default
            `anycqrs.consumers.DEFAULT_RETRY`: 3 attempts).
        dead_letter_exchange: where failed and undecodable messages go
            (declared as a durable `topic` exchange).
        dead_letter_routing_key: routing key for them (default: the queue).
        poll_interval: most seconds the connection thread blocks in pika
            before it looks at acks again.
        reconnect: an `anycqrs.RetryPolicy` for a lost connection and for a
            first connection to a broker that is not up yet; the failed
            connection is its first attempt (default `RetryPolicy(attempts=None,
            delay=0.1, multiplier=2.0, max_delay=30.0)`: forever, at most
            30 s apart). Bad credentials and a forbidden vhost are never
            retried. `None`: a lost connection ends `run` with
            `anycqrs.errors.BrokerError`.
        connection_name: the `connection_name` client property (shown by
            the management UI and `rabbitmqctl list_connections`).
        codec: the body format (an `anycqrs.codecs.MessageCodec`; default
            JSON). `anycqrs.codecs.PythonCqrsCodec()` reads python-cqrs's.
        stalled_after: seconds without progress of the connection thread
            (while connected) before `health()` says not live (`None`: never).
        meter_provider: the OpenTelemetry meter provider for the consumer's
            metrics (default: the global one, read when `run` starts; see
            docs/metrics.md).
        tracer_provider: an OpenTelemetry `TracerProvider` for the
            `process` spans (default: the global one, read when `run`
            starts; none set: no spans).

    Example:
        ```python
        consumer = RabbitMQEventConsumer(url, "shipping", mediator,
                                         bindings=[("orders", "orders.#")],
                                         dead_letter_exchange="orders.dlx")
        async with anyio.create_task_group() as tg:
            await tg.start(consumer.run)
        ```
    """

    def __init__(
        self,
        url: str,
        queue: str,
        mediator: EventSink,
        *,
        bindings: Sequence[tuple[str, str]] = (),
        declare_queue: bool = True,
        prefetch: int = 64,
        max_concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        dead_letter_exchange: str | None = None,
        dead_letter_routing_key: str | None = None,
        poll_interval: float = 0.2,
        reconnect: RetryPolicy | None = CONSUMER_RECONNECT,
        connection_name: str | None = None,
        codec: MessageCodec | None = None,
        stalled_after: float | None = 60.0,
        meter_provider: Any = None,
        tracer_provider: Any = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        name = f"RabbitMQEventConsumer({queue!r})"
        self._sink = mediator
        self._concurrency = max_concurrency if max_concurrency is not None else prefetch
        self._retry = retry if retry is not None else DEFAULT_RETRY
        self._codec = codec
        self._settings = _Settings(
            url=url,
            queue=queue,
            bindings=tuple(bindings),
            declare_queue=declare_queue,
            prefetch=prefetch,
            dlx=dead_letter_exchange,
            dlx_key=dead_letter_routing_key if dead_letter_routing_key is not None else queue,
            poll_interval=poll_interval,
            reconnect=reconnect,
            name=name,
            client_properties={"connection_name": connection_name or f"anycqrs {name}"},
        )
        self._sleep: Sleep = anyio.sleep
        """How reconnect and retry backoff wait (tests replace it)."""
        self._meter_provider = meter_provider
        self._probe = ConsumerProbe(name, stalled_after=stalled_after, unassigned_after=None)

    def health(self) -> HealthCheck:
        """The consumer's health now: not ready while not running or while
        the connection is lost (reconnecting); not live when the connection
        thread made no progress for `stalled_after` seconds (a cheap read)."""
        return self._probe.check()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Consume until cancelled (or a message fails for good).

        Raises:
            MessageHandlingError: a handler kept failing and no dead-letter
                exchange is configured.
            BrokerError: cannot connect; or the connection was lost and
                `reconnect` gave up (or is `None`).
        """
        probe = self._probe
        run = _Run(self._settings, self._sleep, probe)
        metrics = ConsumerMetrics.create(self._meter_provider, "rabbitmq", self._settings.queue)
        try:
            await run.open()
            probe.started()
            await consume(
                self._sink,
                run,
                concurrency=self._concurrency,
                retry=self._retry,
                logger=logger,
                sleep=self._sleep,
                codec=self._codec,
                metrics=metrics,
                tracer_provider=self._tracer_provider,
                task_status=task_status,
            )
        finally:
            probe.stopped()
            await run.close()


class _Run:
    """One run of a consumer, its `anycqrs.consumers.Transport`: its
    connections (one generation each), the deliveries handed over from the
    connection thread and the acks going back.

    The thread-side methods run in the connection thread; the others on the
    event loop.
    """

    def __init__(self, settings: _Settings, sleep: Sleep, probe: ConsumerProbe) -> None:
        self._settings = settings
        self._probe = probe
        self._sleep = sleep
        self._token = anyio.lowlevel.current_token()
        self._arrived: list[_Delivery] = []
        """Received in the connection thread, not handed over yet."""
        self._acks: deque[tuple[int, int]] = deque()
        """(connection generation, delivery tag) of handled messages to ack."""
        self._inbox: list[_Delivery] = []
        self._wakeup = anyio.Event()
        self._ended = False
        self._generation = 0
        self._live: int | None = None
        """Generation of the open connection (`None` while there is none)."""
        self._thread: AmqpThread | None = None

    # -- event-loop side --------------------------------------------------------

    async def open(self) -> None:
        """The first connection; a broker that is not up yet is waited for."""
        settings = self._settings
        await reconnect(settings.reconnect, settings.name, self._connect, sleep=self._sleep)

    async def fetch(self, decode: EventDecoder, /) -> list[Inbound]:
        """The next deliveries, decoded (reconnecting first when the connection is gone)."""
        while True:
            if self._ended:
                await self._reconnect_now()
            if self._inbox:
                deliveries, self._inbox = self._inbox, []
                inbound = decode.inbound
                return [
                    inbound(
                        body,
                        name,
                        method.routing_key,
                        key,
                        lane=hash(key) if key is not None else method.delivery_tag,
                        raw=(method, properties, body),
                        ticket=(generation, method.delivery_tag),
                    )
                    for generation, method, properties, body, name, key in deliveries
                ]
            await self._wakeup.wait()
            self._wakeup = anyio.Event()

    async def close(self) -> None:
        """Ack what was handled and end the connection (shielded)."""
        with anyio.CancelScope(shield=True):
            thread, generation = self._thread, self._live
            self._live = None
            if thread is None:
                return
            if thread.alive and generation is not None:
                with anyio.move_on_after(10):
                    try:
                        await thread.call(lambda channel: self._flush_acks(generation, channel))
                    except ConnectionLost:
                        pass  # unacked: redelivered
            await thread.stop()
            self._thread = None

    async def _connect(self) -> None:
        """Open a new connection (a new generation) and start consuming."""
        settings = self._settings
        self._generation += 1
        generation = self._generation
        self._arrived.clear()
        self._ended = False
        thread = AmqpThread(
            settings.url,
            lambda channel: self._setup(generation, channel),
            after_poll=lambda channel: self._after_poll(generation, channel),
            on_exit=lambda: self._on_exit(generation),
            poll_interval=settings.poll_interval,
            name=settings.name,
            client_properties=settings.client_properties,
        )
        await thread.start()
        self._thread = thread
        self._live = generation
        self._probe.connected()

    async def _reconnect_now(self) -> None:
        """The connection is gone: reconnect with backoff, or raise."""
        settings, thread = self._settings, self._thread
        assert thread is not None
        failure = thread.failure
        lost = ConnectionLost(str(failure) if failure is not None else "the connection closed")
        lost.__cause__ = failure
        self._live = None
        await thread.stop()
        self._thread = None
        if settings.reconnect is None:
            raise ConnectionLost(f"{settings.name}: RabbitMQ connection lost: {lost}") from lost
        await reconnect(
            settings.reconnect, settings.name, self._connect, lost=lost, sleep=self._sleep
        )

    def _deliver(self, items: list[_Delivery]) -> None:
        self._inbox.extend(items)
        self._wakeup.set()

    def _ended_now(self, generation: int) -> None:
        if generation == self._live:
            thread = self._thread
            failure = thread.failure if thread is not None else None
            self._probe.disconnected(str(failure) if failure is not None else "connection closed")
            self._live = None
            self._ended = True
            self._wakeup.set()

    # -- the rest of the transport ---------------------------------------------

    def stale(self, item: Inbound, /) -> bool:
        """Delivered on a connection that is gone: RabbitMQ redelivers it."""
        return bool(item.ticket[0] != self._live)

    def settle(self, items: Sequence[Inbound], /) -> None:
        """Ack handled messages (in the connection thread's next round)."""
        self._acks.extend(item.ticket for item in items)
        self._probe.polled()
        thread = self._thread
        if thread is not None:
            thread.wake()

    def message_headers(self, item: Inbound, /) -> dict[str, Any]:
        """The AMQP headers of the item's message (its `message_id` property too)."""
        _method, properties, _body = item.raw
        headers = dict(properties.headers or {})
        if properties.message_id is not None:
            headers.setdefault("message_id", properties.message_id)
        return headers

    def span_attributes(self, item: Inbound, /) -> dict[str, Any]:
        """The messaging attributes of the item's `process` span."""
        method, properties, _body = item.raw
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": method.routing_key,
            "messaging.rabbitmq.destination.routing_key": method.routing_key,
            "messaging.destination.subscription.name": self._settings.queue,
            "messaging.rabbitmq.message.delivery_tag": method.delivery_tag,
        }
        if method.exchange:
            attributes["messaging.rabbitmq.exchange"] = method.exchange
        if properties.message_id is not None:
            attributes["messaging.message.id"] = properties.message_id
        return attributes

    def location(self, item: Inbound, /) -> str:
        """`queue#delivery_tag`."""
        return f"{self._settings.queue}#{item.ticket[1]}"

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int, /) -> bool:
        """Publish the message to the dead-letter exchange, if there is one."""
        settings, thread = self._settings, self._thread
        dlx = settings.dlx
        if dlx is None:
            return False
        if thread is None or self.stale(item):
            self._not_dead_lettered(item)
            return True  # not acked either: redelivered, tried again
        method, properties, body = item.raw
        dead = dead_letter_properties(
            properties, method.routing_key, settings.queue, error, attempts
        )
        routing_key = settings.dlx_key

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
            self._settings.name,
            self.location(item),
        )

    # -- connection thread ------------------------------------------------------

    def _setup(self, generation: int, channel: Any) -> None:
        settings = self._settings
        if settings.declare_queue:
            channel.queue_declare(settings.queue, durable=True)
        for exchange, routing_key in settings.bindings:
            channel.exchange_declare(exchange, "topic", durable=True)
            channel.queue_bind(settings.queue, exchange, routing_key)
        if settings.dlx is not None:
            channel.exchange_declare(settings.dlx, "topic", durable=True)
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=settings.prefetch)

        def on_message(_channel: Any, method: Any, properties: Any, body: bytes) -> None:
            self._on_message(generation, method, properties, body)

        channel.basic_consume(settings.queue, on_message)

    def _on_message(self, generation: int, method: Any, properties: Any, body: bytes) -> None:
        self._arrived.append((generation, method, properties, body, *name_and_key(properties)))

    def _after_poll(self, generation: int, channel: Any) -> None:
        self._probe.polled()
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
                self._settings.name,
                stale,
            )

    def _on_exit(self, generation: int) -> None:
        try:
            anyio.from_thread.run_sync(self._ended_now, generation, token=self._token)
        except anyio.RunFinishedError:  # pragma: no cover - loop gone
            pass
