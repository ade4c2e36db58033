"""Creating and resuming a run: unbound contexts, resuming the wrong saga."""

from __future__ import annotations

import uuid

import attrs
import pytest

import anycqrs.saga as saga
from anycqrs.errors import (
    SagaError,
    SagaStateError,
)
from anycqrs.saga.storage import MemorySagaStorage

from ._sagas import (
    Boom,
    FallbackSaga,
    Journal,
    OrderContext,
    make_mediator,
)

pytestmark = pytest.mark.anyio


async def test_unbound_context_and_wrong_resume() -> None:
    @attrs.define
    class Other(saga.SagaContext):
        x: int

    mediator = make_mediator(Journal())
    with pytest.raises(SagaError, match="No saga bound for"):
        await mediator.run(Other(1))
    journal, storage = Journal(), MemorySagaStorage()
    mediator = make_mediator(journal, storage)
    sid = uuid.uuid4()
    with pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=1, fail_at="Pay"), saga_id=sid)
    assert await mediator.run(OrderContext(order_id=1), saga_id=sid) == []  # FAILED: nothing
    state = await storage.load_saga_state(sid)
    await storage.save(sid, state.version, status=saga.SagaStatus.COMPENSATING)
    with pytest.raises(SagaStateError, match="is COMPENSATING"):
        await mediator.run(OrderContext(order_id=1), saga_id=sid)
    other = make_mediator(journal, storage, FallbackSaga)
    with pytest.raises(SagaStateError, match="not a FallbackOrderSaga"):
        await other.run(OrderContext(order_id=1), saga_id=sid)


async def test_a_saga_started_in_a_trace_keeps_it_without_a_current_message() -> None:
    """`otel_current` (OpenTelemetry's current context) sees
    the context `get_current` sees: a saga started in a span, with no
    current message, keeps the span's trace headers as its origin."""
    otel_context = pytest.importorskip("opentelemetry.context")
    trace = pytest.importorskip("opentelemetry.trace")
    from anycqrs.observability._context import current_message
    from anycqrs.saga._observed import otel_current

    span = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=False, trace_flags=1)
    )
    assert otel_current() == otel_context.get_current() == {}
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        assert otel_current() is otel_context.get_current() and otel_current()
        assert current_message() is None
        storage = MemorySagaStorage()
        await make_mediator(Journal(), storage).run(OrderContext(order_id=1))
    finally:
        otel_context.detach(token)
    (row,) = storage._rows.values()
    assert row.log[0][3]["origin"]["traceparent"] == f"00-{0x1234:032x}-{0x5678:016x}-01"
