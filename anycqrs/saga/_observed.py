"""A saga run's correlation context and spans.

A saga remembers its *origin* (the correlation headers and the trace
context it was started in) in the `details` of its first step-log entry
(`{"origin": {...}}`), so every storage keeps it with no schema change and
a saga resumed by recovery, in another process, continues the origin's
conversation and links to its trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..observability import _context, _propagation, _tracing
from ._types import SagaStepEntry, SagaStepResult

otel_current = _tracing.otel_context
"""The current OpenTelemetry context (empty without OpenTelemetry)."""

__all__ = [
    "TracedForward",
    "origin_headers",
    "origin_of",
    "otel_current",
    "saga_message",
]

ORIGIN = "origin"
"""The details key of the first step-log entry holding the origin headers."""


def origin_headers() -> dict[str, str] | None:
    """The correlation and trace headers of where a saga starts (`None`: nothing to keep)."""
    if _context._CURRENT.get() is None and not otel_current():  # current_message(), inline
        return None  # no message, an empty trace context
    current = _context.current_message()
    headers: dict[str, str] = {}
    if current is not None:
        headers[_context.CORRELATION_ID] = current.correlation_id
        headers[_context.CAUSATION_ID] = current.message_id
    _propagation.inject_current(headers)
    return headers or None


def origin_of(history: Sequence[SagaStepEntry]) -> dict[str, str] | None:
    """The origin a saga's step log kept (see the module docs)."""
    for logged in history:
        details = logged.details
        if isinstance(details, Mapping) and isinstance(details.get(ORIGIN), Mapping):
            return {str(k): str(v) for k, v in details[ORIGIN].items()}
    return None


def saga_message(saga_id: Any, origin: Mapping[str, str] | None) -> _context.MessageContext:
    """The current message while a saga's steps run: the saga itself, in its
    origin's conversation (`Run.resolve` builds it when it is first read)."""
    own = str(saga_id)
    if not origin:
        return _context.MessageContext(own, own, None)
    return _context.MessageContext(
        own, origin.get(_context.CORRELATION_ID) or own, origin.get(_context.CAUSATION_ID)
    )


class TracedForward:
    """A saga stream in one `saga <Saga>` span (current only while a step
    runs) with one `act <Step>` span per step. A resumed run (recovery)
    links its span to the trace the saga was started in."""

    __slots__ = ("_inner", "_name", "_span", "_tracer")

    def __init__(self, inner: Any, tracer: Any, name: str, origin: Any = None) -> None:
        self._inner = inner
        self._tracer = tracer
        self._name = name
        self._span: Any = None
        if origin is not None:  # recovery: the run, and its origin, are known
            self._open(origin, resumed=True)

    def _open(self, origin: Mapping[str, str] | None, *, resumed: bool) -> Any:
        links = [_tracing.link(_propagation.extract(origin))] if resumed and origin else None
        self._span = _tracing.start_span(
            self._tracer,
            f"saga {self._name}",
            _tracing.INTERNAL,
            {"anycqrs.saga.name": self._name, "anycqrs.saga.resumed": resumed},
            links=links,
        )
        return self._span

    def __aiter__(self) -> TracedForward:
        return self

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._end(None)

    def _end(self, error: BaseException | None) -> None:
        span = self._span
        if span is not None and span.is_recording():
            _tracing.end_span(span, error)

    async def __anext__(self) -> SagaStepResult[Any]:
        if self._inner.finished:  # no empty step span
            self._end(None)
            raise StopAsyncIteration
        span = self._span
        if span is None:
            span = self._open(None, resumed=False)
        try:
            with (
                _tracing.otel_trace.use_span(
                    span, end_on_exit=False, record_exception=False, set_status_on_exception=False
                ),
                _tracing.span(self._tracer, "act", _tracing.INTERNAL) as step,
            ):
                result: SagaStepResult[Any] = await self._inner.__anext__()
                step_name = getattr(result.step_type, "step_name", result.step_type.__name__)
                step.update_name(f"act {step_name}")
                step.set_attribute("anycqrs.saga.step", step_name)
                step.set_attribute("anycqrs.saga.id", str(result.saga_id))
                span.set_attribute("anycqrs.saga.id", str(result.saga_id))
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as error:
            self._end(error)
            raise
        return result
