"""`CorrelationFilter`: the current message's ids (and trace ids) on log records."""

from __future__ import annotations

import logging

from ._context import current_message
from ._tracing import otel_trace

__all__ = ["CorrelationFilter"]


class CorrelationFilter(logging.Filter):
    """Adds `message_id`, `correlation_id`, `causation_id` (and, with
    OpenTelemetry, `trace_id` and `span_id`) to every record it sees, `""`
    when unknown, so a format string can always name them. It never drops
    a record. The library installs it nowhere: add it to your handlers.

    Example:
        ```python
        import logging

        handler = logging.StreamHandler()
        handler.addFilter(CorrelationFilter())
        handler.setFormatter(logging.Formatter("%(correlation_id)s %(message)s"))
        ```
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_message()
        record.message_id = context.message_id if context else ""
        record.correlation_id = context.correlation_id if context else ""
        record.causation_id = (context.causation_id or "") if context else ""
        trace_id = span_id = ""
        if otel_trace is not None:
            span_context = otel_trace.get_current_span().get_span_context()
            if span_context.is_valid:
                trace_id = format(span_context.trace_id, "032x")
                span_id = format(span_context.span_id, "016x")
        record.trace_id = trace_id
        record.span_id = span_id
        return True
