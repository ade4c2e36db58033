"""`TracedRequestStream`: a `RequestStream` in one OpenTelemetry span."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typing_extensions import TypeVar

from ..observability import _tracing
from ._streaming import RequestStream

if TYPE_CHECKING:
    from ._streaming import StreamingRequestMediator

__all__ = ["TracedRequestStream"]

R = TypeVar("R")


class TracedRequestStream(RequestStream[R]):
    """A `RequestStream` in one `stream <Request>` span: current while an
    item is produced (never while the consumer holds it), one `item` span
    event per item, ended when the stream ends, fails or is closed."""

    __slots__ = ("_count", "_inside", "_span")

    def __init__(self, mediator: StreamingRequestMediator, request: Any, source: Any) -> None:
        super().__init__(mediator, request, source)
        self._span: Any = None
        self._count = 0
        self._inside = False

    def __aiter__(self) -> TracedRequestStream[R]:
        return self  # every item through `__anext__`, in the span

    async def __anext__(self) -> R:
        if self._inside:  # the base class re-enters once it opened the handler
            return await super().__anext__()
        self._inside = True
        try:
            return await self._traced_next()
        finally:
            self._inside = False

    async def _traced_next(self) -> R:
        span = self._span
        if span is None:
            if self._done:
                raise StopAsyncIteration
            request_type = type(self._request).__qualname__
            span = self._span = _tracing.start_span(
                self._mediator._tracer,
                f"stream {type(self._request).__name__}",
                _tracing.INTERNAL,
                {"anycqrs.request.type": request_type},
            )
        try:
            with _tracing.otel_trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                item = await super().__anext__()
        except StopAsyncIteration:
            self._end(None)
            raise
        except BaseException as error:
            self._end(error)
            raise
        span.add_event("item", {"anycqrs.stream.index": self._count})
        self._count += 1
        return item

    def _end(self, error: BaseException | None) -> None:
        span = self._span
        if span is not None and span.is_recording():
            span.set_attribute("anycqrs.stream.items", self._count)
            _tracing.end_span(span, error)

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self._end(None)
