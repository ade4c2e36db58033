"""The SagaMediator façade: settings, containers, properties."""

from __future__ import annotations

from typing import Any

import pytest

import anycqrs.saga as saga
from anycqrs.saga import SagaStatus
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import MemorySagaStorage

from ._sagas import (
    Boom,
    Journal,
    make_mediator,
)

pytestmark = pytest.mark.anyio


async def test_dataclass_context_and_async_container() -> None:
    import dataclasses

    @dataclasses.dataclass
    class DC(saga.SagaContext):
        n: int
        tags: list[str] = dataclasses.field(default_factory=list)

    class Add(saga.SagaStepHandler[DC, int]):
        async def act(self, context: DC) -> int:
            context.n += 1
            context.tags.append("x")
            return context.n

    class Fails(saga.SagaStepHandler[DC, None]):
        async def act(self, context: DC) -> None:
            context.n = -1
            raise Boom()

    class DCSaga(saga.Saga[DC]):
        steps = [Add, saga.Fallback(step=Fails, fallback=Add.__class__("Add2", (Add,), {}))]

    class AsyncContainer:
        async def resolve(self, type_: Any) -> Any:
            return type_()

    mediator = bootstrap(
        di_container=AsyncContainer(),
        sagas_mapper=lambda sagas: sagas.bind(DC, DCSaga),
        on_startup=[lambda: None],
    )
    context = DC(n=1)
    results = await mediator.run(context)
    assert [r.response for r in results] == [2, 3]
    assert context.tags == ["x", "x"]
    assert isinstance(mediator.storage, MemorySagaStorage)
    assert mediator.saga_map.get(DC) is DCSaga
    assert ":" in mediator.worker_id


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="compensation_retry_count"):
        make_mediator(Journal(), compensation_retry_count=0)
    with pytest.raises(ValueError, match="attempts"):
        saga.RetryPolicy(attempts=0)
    assert SagaStatus.COMPLETED.terminal and not SagaStatus.RUNNING.terminal
