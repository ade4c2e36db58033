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
