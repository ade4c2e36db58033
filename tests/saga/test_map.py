"""SagaMap bindings."""

from __future__ import annotations

import attrs
import pytest

import anycqrs.saga as saga
from anycqrs.errors import (
    SagaDefinitionError,
)

from ._sagas import (
    FallbackSaga,
    OrderContext,
    OrderSaga,
    Reserve,
)

pytestmark = pytest.mark.anyio


def test_saga_map_bindings() -> None:
    sagas = saga.SagaMap()
    sagas.bind(OrderContext, OrderSaga)
    with pytest.raises(SagaDefinitionError, match="already bound"):
        sagas.bind(OrderContext, FallbackSaga)
    with pytest.raises(SagaDefinitionError, match="is not a saga"):
        sagas.bind(OrderContext, int)  # type: ignore[arg-type]

    @attrs.define
    class Other(saga.SagaContext):
        x: int

    with pytest.raises(SagaDefinitionError, match="runs on"):
        sagas.bind(Other, FallbackSaga)

    class Sub(OrderContext):
        pass

    assert sagas.get(Sub) is OrderSaga
    assert sagas.get(Other) is None
    assert sagas.by_name("OrderSaga") is OrderSaga
    assert len(sagas) == 1 and OrderContext in sagas
    assert "OrderContext: OrderSaga" in repr(sagas)

    class Renamed(saga.Saga[OrderContext]):
        saga_name = "OrderSaga"
        steps = [Reserve]

    @attrs.define
    class Third(OrderContext):
        pass

    with pytest.raises(SagaDefinitionError, match="saga name"):
        sagas.bind(Third, Renamed)
