"""W3C trace context (and baggage) on message headers, with the
propagation API directly (no broker instrumentation package).

Injected headers: `traceparent`, `tracestate` (when not empty) and
`baggage` (when there is any), by the globally configured propagator
(`opentelemetry.propagate`; W3C trace context and baggage by default).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from ._tracing import otel_trace

if otel_trace is not None:
    from opentelemetry import propagate as otel_propagate
    from opentelemetry.propagators.textmap import Getter

    class _HeaderGetter(Getter[Mapping[str, Any]]):
        """Reads `str` or UTF-8 `bytes` header values."""

        def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
            value = carrier.get(key)
            if value is None:
                return None
            if isinstance(value, (bytes, bytearray, memoryview)):
                value = bytes(value).decode(errors="replace")
            return [str(value)]

        def keys(self, carrier: Mapping[str, Any]) -> list[str]:
            return list(carrier)

    _GETTER: Any = _HeaderGetter()

__all__ = ["TRACE_HEADERS", "extract", "inject", "inject_current"]

TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
"""The headers trace context travels in."""


def inject(headers: MutableMapping[str, str], context: Any = None) -> None:
    """Write the trace context of `context` (default: the current one) into
    `headers`, replacing what they carried."""
    otel_propagate.inject(headers, context=context)


def inject_current(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context into `headers` unless they carry one
    already or no span is active (a no-op without OpenTelemetry)."""
    if otel_trace is None or "traceparent" in headers:
        return
    if otel_trace.get_current_span().get_span_context().is_valid:
        otel_propagate.inject(headers)


def extract(headers: Mapping[str, Any] | None) -> Any:
    """The `Context` carried by `headers` (`None` when they carry no
    `traceparent`, or without OpenTelemetry)."""
    if otel_trace is None or not headers or "traceparent" not in headers:
        return None
    return otel_propagate.extract(headers, getter=_GETTER)
