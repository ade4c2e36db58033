"""Observability: correlation ids (without OpenTelemetry) and OpenTelemetry
tracing and propagation (with `opentelemetry-api` only: the `otel` extra).

* Correlation: every message carries `message_id`, `correlation_id` and
  `causation_id` headers (`MESSAGE_ID`, `CORRELATION_ID`, `CAUSATION_ID`);
  `current_message` is the message being handled, `correlation_scope`
  opens a conversation (an HTTP request), `CorrelationFilter` puts the ids
  on log records.
* Tracing: spans for mediators, event handlers, saga runs and steps, outbox
  writes and the relay, Kafka and RabbitMQ produce and process, with W3C
  `traceparent` / `tracestate` / `baggage` on the message headers and the
  outbox rows. Without OpenTelemetry, or without a configured SDK, nothing
  is traced and nothing costs. See the Observability page.

Example:
    ```python
    from anycqrs.observability import correlation_scope, current_message

    with correlation_scope("req-1"):
        assert current_message().correlation_id == "req-1"
    ```
"""

from ._context import CAUSATION_ID as CAUSATION_ID
from ._context import CORRELATION_ID as CORRELATION_ID
from ._context import MESSAGE_ID as MESSAGE_ID
from ._context import MessageContext as MessageContext
from ._context import correlation_scope as correlation_scope
from ._context import current_message as current_message
from ._context import message_from_headers as message_from_headers
from ._correlation import CorrelationMiddleware as CorrelationMiddleware
from ._logging import CorrelationFilter as CorrelationFilter
from ._messaging import TracedTransport as TracedTransport
from ._propagation import TRACE_HEADERS as TRACE_HEADERS

__all__ = [
    "CAUSATION_ID",
    "CORRELATION_ID",
    "MESSAGE_ID",
    "TRACE_HEADERS",
    "CorrelationFilter",
    "CorrelationMiddleware",
    "MessageContext",
    "TracedTransport",
    "correlation_scope",
    "current_message",
    "message_from_headers",
]
