"""Spans with `opentelemetry-api` only, and nothing at all without it.

`tracer(provider)` is the one switch: it returns `None` when
OpenTelemetry is not installed, or when no provider is passed and the
global one is still OpenTelemetry's default (no SDK configured). Every
component asks once, when it is built, and keeps its untraced code path
when the answer is `None`: no span object, no context switch, no check
per message beyond one `is None`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

otel_trace: Any
otel_context: Callable[[], Mapping[str, Any]] = dict
"""OpenTelemetry's current context (`opentelemetry.context.get_current`), an
empty mapping without OpenTelemetry: an empty context holds no span, so the
callers skip their propagation work for it."""
try:  # the `otel` extra
    from opentelemetry import context as _otel_context
    from opentelemetry import trace as _otel_trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    otel_trace = _otel_trace
    otel_context = _otel_context.get_current
except ImportError:  # pragma: no cover - exercised by the test that blocks the import
    otel_trace = None
    Status = StatusCode = None  # type: ignore[assignment,misc]

__all__ = [
    "CONSUMER",
    "INTERNAL",
    "PRODUCER",
    "SERVER",
    "Status",
    "StatusCode",
    "otel_context",
    "otel_trace",
    "available",
    "end_span",
    "link",
    "span",
    "start_span",
    "tracer",
]

INSTRUMENTATION = "anycqrs"

if otel_trace is not None:
    INTERNAL: Any = SpanKind.INTERNAL
    PRODUCER: Any = SpanKind.PRODUCER
    CONSUMER: Any = SpanKind.CONSUMER
    SERVER: Any = SpanKind.SERVER
else:  # pragma: no cover
    INTERNAL = PRODUCER = CONSUMER = SERVER = None


def available() -> bool:
    """Whether `opentelemetry-api` is importable."""
    return otel_trace is not None


def tracer(provider: Any = None) -> Any:
    """The tracer anycqrs components trace with, or `None` (no tracing).

    Args:
        provider: an OpenTelemetry `TracerProvider`; `None` reads the
            global one (`opentelemetry.trace.set_tracer_provider`) now, and
            gives `None` when it was never set.

    Example:
        ```python
        from opentelemetry.sdk.trace import TracerProvider

        assert tracer(TracerProvider()) is not None
        ```
    """
    if otel_trace is None:
        return None
    if provider is None:
        provider = otel_trace.get_tracer_provider()
        if isinstance(provider, (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)):
            return None
    from .. import __version__

    return provider.get_tracer(INSTRUMENTATION, __version__)


def link(context: Any) -> Any:
    """A span link to the span context of an extracted `Context` (or `None`)."""
    if context is None:
        return None
    span_context = otel_trace.get_current_span(context).get_span_context()
    return Link(span_context) if span_context.is_valid else None


def start_span(
    tracer: Any,
    name: str,
    kind: Any = None,
    attributes: Mapping[str, Any] | None = None,
    *,
    context: Any = None,
    links: Sequence[Any] | None = None,
) -> Any:
    """Start a span that is not made current (end it with `end_span`)."""
    return tracer.start_span(
        name,
        context=context,
        kind=INTERNAL if kind is None else kind,
        attributes=attributes,
        links=[one for one in links if one is not None] if links else None,
    )


def end_span(span: Any, error: BaseException | None = None) -> None:
    """Record `error` (an `Exception`; a cancellation is not an error) and end `span`."""
    if isinstance(error, Exception):
        failed(span, error)
    span.end()


def failed(span: Any, error: BaseException) -> None:
    """Mark `span` failed by `error`."""
    span.record_exception(error)
    span.set_attribute("error.type", type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}"))


@contextmanager
def span(
    tracer: Any,
    name: str,
    kind: Any = None,
    attributes: Mapping[str, Any] | None = None,
    *,
    context: Any = None,
    links: Sequence[Any] | None = None,
) -> Iterator[Any]:
    """A span, current for the block; an `Exception` leaving the block is
    recorded on it (cancellation is not). Works in async code and in worker
    threads (the context travels with `anyio.to_thread.run_sync`)."""
    current = start_span(tracer, name, kind, attributes, context=context, links=links)
    with otel_trace.use_span(
        current, end_on_exit=False, record_exception=False, set_status_on_exception=False
    ):
        try:
            yield current
        except Exception as error:
            failed(current, error)
            raise
        finally:
            current.end()
