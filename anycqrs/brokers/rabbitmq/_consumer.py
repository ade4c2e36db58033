"""The RabbitMQ consumer: a transport over the public consumer layer.

`RabbitMQEventConsumer` holds the settings; each `run` builds a `ConsumerRun`
(`_run.py`: the transport of that run — the connection thread, its deliveries and
acks, reconnecting when the connection is lost) and hands it to
`anycqrs.consumers.consume`, which feeds the event sink through the lanes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from ..._retry import RetryPolicy, Sleep
from ...codecs import MessageCodec
from ...consumers import DEFAULT_RETRY, EventSink, consume
from ...observability._health import ConsumerProbe, HealthCheck
from ...observability._metrics import ConsumerMetrics
from ._reconnect import CONSUMER_RECONNECT
from ._run import ConsumerRun, Settings

__all__ = ["RabbitMQEventConsumer"]

logger = logging.getLogger("anycqrs.brokers.rabbitmq")


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
        self._settings = Settings(
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
        run = ConsumerRun(self._settings, self._sleep, probe)
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
