"""Observability: correlation ids (without OpenTelemetry), OpenTelemetry
tracing and propagation, metrics on the OpenTelemetry metrics API, and health
checks.

* Correlation: every message carries `message_id`, `correlation_id` and
  `causation_id` headers (`MESSAGE_ID`, `CORRELATION_ID`, `CAUSATION_ID`);
  `current_message` is the message being handled, `correlation_scope`
  opens a conversation (an HTTP request), `CorrelationFilter` puts the ids
  on log records.
* Tracing: spans for mediators, event handlers, saga runs and steps, outbox
  writes and the relay, Kafka and RabbitMQ produce and process, with W3C
  `traceparent` / `tracestate` / `baggage` on the message headers and the
  outbox rows. See the Observability page.
* Metrics: consumers, Kafka lag, producers, the outbox (`OutboxMonitor`),
  sagas and the circuit breaker (`MetricsMiddleware` for handler durations).
  See the Metrics and health page.
* Health: the consumers, the relay and `OutboxMonitor` report a
  `HealthCheck`, `Health` gathers them into a `HealthReport`, and
  `HealthApp` serves it for Kubernetes probes (`/livez`, `/readyz`).

Tracing and metrics need `opentelemetry-api` (the `otel` extra) and a
configured SDK; without them nothing is recorded and nothing costs.
Correlation and health need nothing.

Example:
    ```python
    from anycqrs.observability import Health, HealthCheck, correlation_scope, current_message

    with correlation_scope("req-1"):
        assert current_message().correlation_id == "req-1"

    class Cache:
        def health(self) -> HealthCheck:
            return HealthCheck("cache", live=True, ready=True)

    assert Health([Cache()]).health().ready
    ```
"""

from ._asgi import HealthApp as HealthApp
from ._context import CAUSATION_ID as CAUSATION_ID
from ._context import CORRELATION_ID as CORRELATION_ID
from ._context import MESSAGE_ID as MESSAGE_ID
from ._context import MessageContext as MessageContext
from ._context import correlation_scope as correlation_scope
from ._context import current_message as current_message
from ._context import message_from_headers as message_from_headers
from ._correlation import CorrelationMiddleware as CorrelationMiddleware
from ._health import ConsumerProbe as ConsumerProbe
from ._health import Health as Health
from ._health import HealthCheck as HealthCheck
from ._health import HealthReport as HealthReport
from ._health import HealthSource as HealthSource
from ._logging import CorrelationFilter as CorrelationFilter
from ._messaging import TracedTransport as TracedTransport
from ._metrics import ConsumerMetrics as ConsumerMetrics
from ._metrics import MetricsMiddleware as MetricsMiddleware
from ._outbox import OutboxMonitor as OutboxMonitor
from ._outbox import OutboxSnapshot as OutboxSnapshot
from ._outbox import OutboxStats as OutboxStats
from ._propagation import TRACE_HEADERS as TRACE_HEADERS

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "MESSAGE_ID",
    "TRACE_HEADERS",
    "ConsumerMetrics",
    "ConsumerProbe",
    "CorrelationFilter",
    "CorrelationMiddleware",
    "Health",
    "HealthApp",
    "HealthCheck",
    "HealthReport",
    "HealthSource",
    "MessageContext",
    "MetricsMiddleware",
    "OutboxMonitor",
    "OutboxSnapshot",
    "OutboxStats",
    "TracedTransport",
    "correlation_scope",
    "current_message",
    "message_from_headers",
]
