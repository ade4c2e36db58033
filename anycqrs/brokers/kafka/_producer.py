"""The Kafka producer: `KafkaMessageBroker`, a `MessageBroker` over
`KafkaProducerCore` (`_core.py`: one librdkafka producer, one delivery-report
thread, batches confirmed with one event-loop wake-up per poll)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ...codecs import MessageCodec
from ...observability import _messaging, _tracing
from .._message import Message
from ._core import KafkaProducerCore
from ._logs import with_logger
from ._wire import record_encoder

__all__ = ["KafkaMessageBroker"]

logger = logging.getLogger("anycqrs.brokers.kafka")


def _id(message: Message) -> str:
    return str(message.message_id)


class KafkaMessageBroker:
    """Publishes messages to Kafka; `send_message` returns once the broker
    confirmed delivery.

    Use it inside `async with`: entering creates the librdkafka producer and
    its delivery-report thread; leaving flushes what is still queued
    (shielded from cancellation, for at most `flush_timeout` seconds).

    Args:
        config: librdkafka configuration, passed through unchanged
            (`bootstrap.servers`, security, `compression.type`,
            `enable.idempotence`, `linger.ms`, `message.timeout.ms`...).
            librdkafka's own log lines go to the Python logger
            `anycqrs.brokers.kafka.librdkafka.producer` unless it holds a
            `logger` of its own.
        flush_timeout: seconds the flush on exit may take.
        poll_interval: seconds each delivery-thread poll may block.
        codec: the value format (an `anycqrs.codecs.MessageCodec`; default
            JSON). `anycqrs.codecs.PythonCqrsCodec()` writes what python-cqrs
            services read, `anycqrs.codecs.ProtobufCodec` protobuf.
        meter_provider: the OpenTelemetry meter provider for
            `messaging.client.sent.messages`, delivery failures and the
            queue depth (default: the global one, read on `async with`).
        tracer_provider: an OpenTelemetry `TracerProvider` for the `send`
            spans (default: the global one, read now; none set: no spans,
            the headers unchanged).

    A publish fails with `anycqrs.errors.BrokerDeliveryError` when the broker
    rejects a message or cannot be reached within librdkafka's
    `message.timeout.ms` (librdkafka retries until then); its `failures`
    name each undelivered message and `positions` / `undelivered()` give
    exactly the ones to retry. A full local queue is backpressure: the
    publish waits for room, nothing is dropped, and cancelling it returns
    at once (within about 10 ms; records not yet queued are not sent).

    Example:
        ```python
        async with KafkaMessageBroker({"bootstrap.servers": "localhost:9092"}) as broker:
            await broker.send_message(Message.from_event(event))
            await broker.send_many([Message.from_event(e) for e in events])
        ```
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        flush_timeout: float = 30.0,
        poll_interval: float = 0.05,
        codec: MessageCodec | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
    ) -> None:
        self._tracer = _tracing.tracer(tracer_provider)
        self._core: KafkaProducerCore[Message] = KafkaProducerCore(
            with_logger(config, "producer"),
            record_encoder(codec),
            _id,
            flush_timeout=flush_timeout,
            poll_interval=poll_interval,
            name="KafkaMessageBroker",
            meter_provider=meter_provider,
        )

    async def __aenter__(self) -> KafkaMessageBroker:
        await self._core.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._core.stop()

    async def send_message(self, message: Message, /) -> None:
        """Publish `message` and wait for the broker's confirmation.

        Raises:
            BrokerDeliveryError: the broker did not confirm it.
            BrokerError: the broker is not started (use `async with`).
        """
        if self._tracer is None:
            await self._core.produce((message,))
            return
        await self.send_many((message,))

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Publish `messages` in order (one thread hop, one wait) and return
        once all were confirmed. Messages with one key stay in order.

        Raises:
            BrokerDeliveryError: some were not confirmed (`.failures` lists
                them; the rest were delivered).
        """
        batch = messages if isinstance(messages, Sequence) else list(messages)
        tracer = self._tracer
        if tracer is None:
            await self._core.produce(batch)
            return
        sent, spans = _messaging.start_sends(tracer, "kafka", batch)
        error: BaseException | None = None
        try:
            await self._core.produce(sent)
        except BaseException as exc:
            error = exc
            raise
        finally:
            _messaging.end_sends(spans, error)
