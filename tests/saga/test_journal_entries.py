"""What the engine's entries look like to a storage: `StepRecord`s to every
storage but the memory one, which keeps plain tuples and reads them back the same."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from anycqrs.saga import Saga, SagaContext, SagaMap, SagaStepHandler
from anycqrs.saga import bootstrap as saga_bootstrap
from anycqrs.saga.storage import MemorySagaStorage, StepRecord

pytestmark = pytest.mark.anyio


@attrs.define
class Ctx(SagaContext):
    n: int
    done: bool = False


class One(SagaStepHandler[Ctx, None]):
    async def act(self, context: Ctx) -> None:
        context.done = True

    async def compensate(self, context: Ctx) -> None:
        context.done = False


class Two(SagaStepHandler[Ctx, None]):
    async def act(self, context: Ctx) -> None:
        if context.n < 0:
            raise ValueError("negative")

    async def compensate(self, context: Ctx) -> None:
        return None


class TwoSteps(Saga[Ctx]):
    steps = [One, Two]


class Recording:
    """A storage (not memory, no synchronous writers) that records what it is given."""

    def __init__(self) -> None:
        self.inner = MemorySagaStorage()
        self.given: list[Any] = []

    async def create_saga(self, saga_id: Any, saga_name: str, context: Any, **kw: Any) -> int:
        self.given.extend(kw.get("entries", ()))
        return await self.inner.create_saga(saga_id, saga_name, context, **kw)

    async def save(self, saga_id: Any, expected_version: int, **kw: Any) -> int:
        self.given.extend(kw.get("entries", ()))
        return await self.inner.save(saga_id, expected_version, **kw)

    async def load_saga_state(self, saga_id: Any) -> Any:
        return await self.inner.load_saga_state(saga_id)

    async def get_step_history(self, saga_id: Any) -> Any:
        return await self.inner.get_step_history(saga_id)

    async def claim(self, **kw: Any) -> Any:
        return await self.inner.claim(**kw)

    async def release(self, saga_id: Any, owner: str) -> None:
        await self.inner.release(saga_id, owner)


def _mediator(storage: Any) -> Any:
    def sagas(mapper: SagaMap) -> None:
        mapper.bind(Ctx, TwoSteps)

    return saga_bootstrap.bootstrap(sagas_mapper=sagas, saga_storage=storage)


@pytest.mark.parametrize("n", [1, -1])
async def test_other_storages_get_step_records_and_both_histories_match(n: int) -> None:
    recording, memory = Recording(), MemorySagaStorage()
    ids = []
    for storage in (recording, memory):
        results = []
        with pytest.raises(ValueError) if n < 0 else _nothing():
            async for result in _mediator(storage).stream(Ctx(n=n)):
                results.append(result)
        ids.append(await _only_saga(storage if storage is memory else recording.inner))
    assert recording.given and all(type(e) is StepRecord for e in recording.given)
    history = [
        [(e.step_name, e.action, e.status, e.details) for e in await store.get_step_history(sid)]
        for store, sid in ((recording.inner, ids[0]), (memory, ids[1]))
    ]
    assert history[0] == history[1]
    assert len(history[0]) == (4 if n > 0 else 6)


async def _only_saga(storage: MemorySagaStorage) -> Any:
    from uuid import UUID

    (key,) = storage._rows  # one saga per storage here
    return UUID(int=key)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None
