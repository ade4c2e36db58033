"""The journal: one way to write a run, with or without a coroutine per write."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from anycqrs.saga import SagaStatus
from anycqrs.saga._run import Journal
from anycqrs.saga.storage import MemorySagaStorage, SagaStorage, StepRecord
from anycqrs.saga.storage._protocol import SynchronousWriters

from ._sagas import OrderContext, stored_run

pytestmark = pytest.mark.anyio


class CountingSaves(MemorySagaStorage):
    """Overrides the coroutine `save`: the journal must write through it."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    async def save(
        self,
        saga_id: uuid.UUID,
        expected_version: int,
        *,
        status: SagaStatus | None = None,
        context: Mapping[str, Any] | None = None,
        entries: Sequence[StepRecord] = (),
    ) -> int:
        self.saves += 1
        return await super().save(
            saga_id, expected_version, status=status, context=context, entries=entries
        )


async def test_memory_storage_is_written_without_a_coroutine() -> None:
    storage = MemorySagaStorage()
    assert isinstance(storage, SynchronousWriters)
    journal = Journal(storage)
    run = await stored_run(storage, OrderContext(order_id=1))
    written = journal.save(run.saga_id, run.version, SagaStatus.COMPLETED, None, (), 0.0)
    assert written == 2 and not inspect.isawaitable(written)
    assert (await storage.load_saga_state(run.saga_id)).status is SagaStatus.COMPLETED


async def test_an_overridden_save_is_awaited(storage: SagaStorage) -> None:
    counting = CountingSaves()
    for target in (counting, storage):
        journal = Journal(target)
        run = await stored_run(target, OrderContext(order_id=2))
        await journal.write(run, status=SagaStatus.COMPLETED)
        assert run.version == 2
        assert (await target.load_saga_state(run.saga_id)).status is SagaStatus.COMPLETED
    assert counting.saves == 1
    assert Journal(counting).create is not None
    assert counting.synchronous_writers()[1] is None
