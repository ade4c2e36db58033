"""Metrics on the OpenTelemetry metrics API: the instruments of each part of
anycqrs, created once per component and recorded with cached attributes.

`opentelemetry-api` is optional. Without it, with a `NoOpMeterProvider`, or
with no meter provider set (the API's proxy, i.e. no SDK configured), a
component gets `None` instead of its metrics object and its hot path costs
one `is None` test. The global provider is read when the component is built
or started (`meter_provider=` wins): configure the SDK first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..messages import NotificationEvent

__all__ = [
    "DURATION_BUCKETS",
    "Attributes",
    "ConsumerMetrics",
    "MetricsMiddleware",
    "ProducerMetrics",
    "histogram",
    "meter",
]

DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""Histogram buckets of every duration, in seconds (OpenTelemetry's messaging
conventions' advice, plus 1 ms)."""


def meter(meter_provider: Any = None) -> Any | None:
    """The `anycqrs` meter of `meter_provider` (default: the global one), or
    `None` when metrics are off: OpenTelemetry not installed, a no-op
    provider, or no provider set yet.

    Example:
        ```python
        from opentelemetry.sdk.metrics import MeterProvider

        assert meter(MeterProvider()) is not None
        ```
    """
    try:
        from opentelemetry import metrics
    except ImportError:  # pragma: no cover - the otel extra is absent
        return None
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    if isinstance(provider, metrics.NoOpMeterProvider) or _unset(provider):
        return None
    from .. import __version__

    return provider.get_meter("anycqrs", __version__)


def _unset(provider: Any) -> bool:
    """Whether `provider` is the API's proxy (no SDK configured yet)."""
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # pragma: no cover - another API layout: assume it is real
        return False
    return isinstance(provider, _ProxyMeterProvider)


def histogram(m: Any, name: str, unit: str, description: str) -> Any:
    """A duration histogram with `DURATION_BUCKETS`."""
    return m.create_histogram(
        name,
        unit=unit,
        description=description,
        explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
    )


class Attributes:
    """Attribute dicts built once per key (no dict per record)."""

    __slots__ = ("_base", "_cache", "_make")

    def __init__(self, base: dict[str, Any], make: Callable[..., dict[str, Any]]) -> None:
        self._base = base
        self._make = make
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def __call__(self, *key: Any) -> dict[str, Any]:
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = {**self._base, **self._make(*key)}
        return found


def _destination(topic: str | None) -> dict[str, Any]:
    return {} if not topic else {"messaging.destination.name": topic}


def _names(event: NotificationEvent[Any] | None) -> tuple[str | None, str]:
    """The topic and event name of a decoded event (`None` for a poison message)."""
    if event is None:
        return None, "unknown"
    return event.topic, event.event_name


class ConsumerMetrics:
    """The instruments of one consumer (Kafka, RabbitMQ or any transport run by
    `anycqrs.consumers.consume`).

    The built-in consumers make their own; a transport of your own gets
    them from `create` and hands them to `anycqrs.consumers.consume`.

    Args:
        m: the meter (from `meter`).
        system: `messaging.system` (`"kafka"`, `"rabbitmq"`...).
        group: `messaging.consumer.group.name` (Kafka group id, RabbitMQ queue).

    Example:
        ```python
        metrics = ConsumerMetrics.create(meter_provider, "nats", "billing")
        await consume(mediator, NatsTransport(...), metrics=metrics)  # None: off
        ```
    """

    __slots__ = (
        "_consumed",
        "_dead",
        "_dead_attrs",
        "_duration",
        "_failed",
        "_flight_attrs",
        "_in_flight",
        "_lag",
        "_lag_attrs",
        "_process_attrs",
        "_retried",
        "_topic_attrs",
    )

    def __init__(self, m: Any, system: str, group: str | None = None) -> None:
        base: dict[str, Any] = {"messaging.system": system}
        if group:
            base["messaging.consumer.group.name"] = group
        self._consumed = m.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages handed to the application (handled, dead-lettered or poison).",
        )
        self._duration = histogram(
            m, "messaging.process.duration", "s", "Time to process one message, retries included."
        )
        self._failed = m.create_counter(
            "anycqrs.consumer.failed",
            unit="{message}",
            description="Messages whose handler still failed after the retries.",
        )
        self._retried = m.create_counter(
            "anycqrs.consumer.retries", unit="{retry}", description="Handler retries."
        )
        self._dead = m.create_counter(
            "anycqrs.consumer.dead_lettered",
            unit="{message}",
            description="Messages moved to the dead-letter destination.",
        )
        self._in_flight = m.create_up_down_counter(
            "anycqrs.consumer.in_flight",
            unit="{message}",
            description="Messages handed to a lane and not finished yet.",
        )
        self._lag = m.create_gauge(
            "anycqrs.consumer.lag",
            unit="{message}",
            description="Messages behind the partition's high watermark (librdkafka statistics).",
        )
        self._topic_attrs = Attributes(
            {**base, "messaging.operation.name": "receive"}, _destination
        )
        self._process_attrs = Attributes(
            {**base, "messaging.operation.name": "process"},
            lambda topic, name, outcome, error: {
                **_destination(topic),
                "anycqrs.message.type": name,
                "anycqrs.outcome": outcome,
                **({} if error is None else {"error.type": error}),
            },
        )
        self._dead_attrs = Attributes(
            base,
            lambda topic, name, reason: {
                **_destination(topic),
                "anycqrs.message.type": name,
                "anycqrs.dead_letter.reason": reason,
            },
        )
        self._flight_attrs = Attributes(base, lambda lane: {"anycqrs.consumer.lane": lane})
        self._lag_attrs = Attributes(
            base,
            lambda topic, partition: {
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(partition),
            },
        )

    @classmethod
    def create(
        cls, meter_provider: Any, system: str, group: str | None = None
    ) -> ConsumerMetrics | None:
        """The metrics of a consumer, or `None` when metrics are off."""
        m = meter(meter_provider)
        return None if m is None else cls(m, system, group)

    def processed(
        self,
        event: NotificationEvent[Any] | None,
        outcome: str,
        seconds: float,
        error: BaseException | None = None,
    ) -> None:
        """One message's processing ended: `outcome` is `success`,
        `dead_lettered`, `poison` or `failed` (the consumer stops)."""
        topic, name = _names(event)
        error_type = None if error is None else type(error).__qualname__
        self._duration.record(seconds, self._process_attrs(topic, name, outcome, error_type))
        if outcome == "failed":
            self._failed.add(1, self._topic_attrs(topic))

    def finished(self, lane: int, handed: int, events: Sequence[Any]) -> None:
        """A lane's chunk of `handed` items is over; `events` (their decoded
        events, `None` for poison) finished: one counter add per topic."""
        self._in_flight.add(-handed, self._flight_attrs(lane))
        if not events:
            return
        first = events[0]
        topic = None if first is None else first.topic
        count = 0
        for event in events:
            this = None if event is None else event.topic
            if this != topic:
                self._consumed.add(count, self._topic_attrs(topic))
                topic, count = this, 0
            count += 1
        self._consumed.add(count, self._topic_attrs(topic))

    def retried(self, event: NotificationEvent[Any] | None) -> None:
        """A failed handler runs again."""
        self._retried.add(1, self._topic_attrs(_names(event)[0]))

    def dead_lettered(self, event: NotificationEvent[Any] | None, reason: str) -> None:
        """A message went to the dead-letter destination (`failed` or `poison`)."""
        topic, name = _names(event)
        self._dead.add(1, self._dead_attrs(topic, name, reason))
        if reason == "failed":
            self._failed.add(1, self._topic_attrs(topic))

    def in_flight(self, lane: int, delta: int) -> None:
        """`delta` messages entered (positive) or left (negative) lane `lane`."""
        self._in_flight.add(delta, self._flight_attrs(lane))

    def lag(self, topic: str, partition: int, value: int) -> None:
        """The consumer lag of one partition."""
        self._lag.set(value, self._lag_attrs(topic, partition))


class ProducerMetrics:
    """The instruments of one producer (`KafkaMessageBroker`)."""

    __slots__ = ("_attrs", "_failed", "_queue", "_sent")

    def __init__(self, m: Any, system: str) -> None:
        self._attrs = {"messaging.system": system, "messaging.operation.name": "send"}
        self._sent = m.create_counter(
            "messaging.client.sent.messages",
            unit="{message}",
            description="Messages the broker confirmed.",
        )
        self._failed = m.create_counter(
            "anycqrs.producer.delivery_failures",
            unit="{message}",
            description="Messages the broker did not confirm.",
        )
        self._queue = m.create_gauge(
            "anycqrs.producer.queue_depth",
            unit="{message}",
            description="Messages in the client's queue, not confirmed yet (after each publish).",
        )

    @classmethod
    def create(cls, meter_provider: Any, system: str) -> ProducerMetrics | None:
        """The metrics of a producer, or `None` when metrics are off."""
        m = meter(meter_provider)
        return None if m is None else cls(m, system)

    def delivered(self, sent: int, failed: int, queued: int | None) -> None:
        """One publish call finished (`queued`: the client's queue after it,
        `None` when the client has none to tell)."""
        attrs = self._attrs
        if sent:
            self._sent.add(sent, attrs)
        if failed:
            self._failed.add(failed, attrs)
        if queued is not None:
            self._queue.set(queued, attrs)


class MetricsMiddleware:
    """Measures every handler call it wraps: `anycqrs.handler.duration`
    (seconds) per message type and outcome.

    Add it to a mediator's `middlewares` (requests, events, stream items,
    saga steps). A mediator without middlewares keeps its fast path, so the
    measurement is opt-in; with metrics off (no SDK) it is a plain
    pass-through.

    Args:
        meter_provider: where the histogram goes (default: the global
            provider, read when the middleware is built).

    Example:
        ```python
        from opentelemetry.sdk.metrics import MeterProvider

        middleware = MetricsMiddleware(meter_provider=MeterProvider())
        ```
    """

    __slots__ = ("_attrs", "_duration")

    def __init__(self, *, meter_provider: Any = None) -> None:
        m = meter(meter_provider)
        self._duration = (
            None
            if m is None
            else histogram(m, "anycqrs.handler.duration", "s", "Time of one handler call.")
        )
        self._attrs = Attributes(
            {},
            lambda name, outcome, error: {
                "anycqrs.message.type": name,
                "anycqrs.outcome": outcome,
                **({} if error is None else {"error.type": error}),
            },
        )

    async def __call__(self, message: Any, call_next: Callable[[Any], Any], /) -> Any:
        """Run the rest of the chain, timed."""
        duration = self._duration
        if duration is None:
            return await call_next(message)
        name = (
            message.event_name if isinstance(message, NotificationEvent) else type(message).__name__
        )
        started = time.perf_counter()
        try:
            result = await call_next(message)
        except Exception as error:
            duration.record(
                time.perf_counter() - started,
                self._attrs(name, "failure", type(error).__qualname__),
            )
            raise
        duration.record(time.perf_counter() - started, self._attrs(name, "success", None))
        return result
