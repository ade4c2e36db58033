"""Saga definitions are validated when the class is defined."""

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


def test_saga_definitions_are_validated() -> None:
    @attrs.define
    class Other(saga.SagaContext):
        x: int

    class OtherStep(saga.SagaStepHandler[Other, None]):
        async def act(self, context: Other) -> None:
            return None

    with pytest.raises(SagaDefinitionError, match="does not accept"):

        class Bad(saga.Saga[OrderContext]):
            steps = [Reserve, OtherStep]

    with pytest.raises(SagaDefinitionError, match="non-empty"):

        class Empty(saga.Saga[OrderContext]):
            steps = []

    with pytest.raises(SagaDefinitionError, match="expected a SagaStepHandler"):

        class NotAStep(saga.Saga[OrderContext]):
            steps = [Reserve, int]

    with pytest.raises(SagaDefinitionError, match="unique"):

        class Twice(saga.Saga[OrderContext]):
            steps = [Reserve, Reserve]

    with pytest.raises(SagaDefinitionError, match="name its context"):

        class NoContext(saga.Saga):  # type: ignore[type-arg]
            steps = [Reserve]

    with pytest.raises(SagaDefinitionError, match="attrs class or a dataclass"):

        class Plain(saga.Saga[int]):  # type: ignore[type-var]
            steps = [Reserve]

    with pytest.raises(SagaDefinitionError, match="does not implement act"):

        class Abstract(saga.Saga[OrderContext]):
            steps = [saga.SagaStepHandler]

    with pytest.raises(SagaDefinitionError, match="SagaStepHandler subclass"):
        saga.Fallback(step=Reserve, fallback=int)  # type: ignore[arg-type]

    with pytest.raises(SagaDefinitionError, match="non-empty string"):

        class Unnamed(Reserve):
            step_name = ""

    assert OrderSaga.step_names() == ("Reserve", "Pay", "Ship")
    assert FallbackSaga.step_names() == ("Reserve", "Ship", "ShipSlow")
    assert FallbackSaga.saga_name == "FallbackOrderSaga"
    assert OrderSaga.context_type is OrderContext
