"""`MemorySagaStorage`'s retention policy: unfinished sagas stay, the most
recent `keep_finished` finished ones stay, older finished ones are dropped."""

from __future__ import annotations

import time
import uuid

import pytest

from anycqrs.errors import SagaNotFoundError
from anycqrs.saga import SagaStatus, SagaStepStatus, StepAction
from anycqrs.saga.storage import MemorySagaStorage, StepRecord

pytestmark = pytest.mark.anyio


def _started() -> list[StepRecord]:
    return [StepRecord("A", StepAction.ACT, SagaStepStatus.STARTED, None, time.time())]


async def _finished(storage: MemorySagaStorage, status: SagaStatus) -> uuid.UUID:
    sid = uuid.uuid4()
    await storage.create_saga(sid, "S", {}, status=SagaStatus.RUNNING, entries=_started())
    await storage.save(sid, 1, status=status)
    return sid


async def test_the_oldest_finished_sagas_are_dropped() -> None:
    storage = MemorySagaStorage(keep_finished=2)
    assert storage.keep_finished == 2
    running = uuid.uuid4()
    await storage.create_saga(running, "S", {}, status=SagaStatus.RUNNING)
    stuck = await _finished(storage, SagaStatus.COMPENSATION_FAILED)
    first = await _finished(storage, SagaStatus.COMPLETED)
    second = await _finished(storage, SagaStatus.FAILED)
    assert (await storage.load_saga_state(first)).status is SagaStatus.COMPLETED
    third = await _finished(storage, SagaStatus.COMPLETED)
    with pytest.raises(SagaNotFoundError):
        await storage.load_saga_state(first)
    assert await storage.get_step_history(first) == []
    for kept, status in (
        (second, SagaStatus.FAILED),
        (third, SagaStatus.COMPLETED),
        (running, SagaStatus.RUNNING),
        (stuck, SagaStatus.COMPENSATION_FAILED),
    ):
        assert (await storage.load_saga_state(kept)).status is status
    # a dropped id is free again
    await storage.create_saga(first, "S", {}, status=SagaStatus.RUNNING)
    assert (await storage.load_saga_state(first)).status is SagaStatus.RUNNING


async def test_default_keeps_a_thousand_and_none_keeps_all() -> None:
    assert MemorySagaStorage().keep_finished == 1000
    storage = MemorySagaStorage(keep_finished=None)
    ids = [await _finished(storage, SagaStatus.COMPLETED) for _ in range(5)]
    for sid in ids:
        assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPLETED


async def test_zero_keeps_no_finished_saga() -> None:
    storage = MemorySagaStorage(keep_finished=0)
    sid = await _finished(storage, SagaStatus.COMPLETED)
    with pytest.raises(SagaNotFoundError):
        await storage.load_saga_state(sid)


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_finished"):
        MemorySagaStorage(keep_finished=-1)


async def test_a_save_after_the_drop_of_the_saga_created_last_is_not_found() -> None:
    """The storage finds the saga created last by identity; dropping it forgets it."""
    storage = MemorySagaStorage(keep_finished=0)
    sid = await _finished(storage, SagaStatus.COMPLETED)  # created last, then dropped
    with pytest.raises(SagaNotFoundError):
        await storage.save(sid, 2, status=SagaStatus.RUNNING)
    await storage.create_saga(sid, "S", {}, status=SagaStatus.RUNNING)  # created again
    assert await storage.save(sid, 1, context={"n": 1}) == 2
    other = uuid.uuid4()
    await storage.create_saga(other, "S", {}, status=SagaStatus.RUNNING)  # now the last one
    assert await storage.save(uuid.UUID(int=sid.int), 2) == 3  # an equal id, another object
    assert (await storage.load_saga_state(sid)).context == {"n": 1}


async def test_sagas_created_finished_and_finished_by_a_save_share_the_bound() -> None:
    """`create_saga` (through `_finish`) and `save` (its inline copy) count
    into one retention queue."""
    storage = MemorySagaStorage(keep_finished=1)
    created = uuid.uuid4()
    await storage.create_saga(created, "S", {}, status=SagaStatus.COMPLETED)
    saved = await _finished(storage, SagaStatus.FAILED)
    with pytest.raises(SagaNotFoundError):
        await storage.load_saga_state(created)
    again = uuid.uuid4()
    await storage.create_saga(again, "S", {}, status=SagaStatus.FAILED)
    with pytest.raises(SagaNotFoundError):
        await storage.load_saga_state(saved)
    assert (await storage.load_saga_state(again)).status is SagaStatus.FAILED
