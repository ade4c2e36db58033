"""Recovery: resume RUNNING, finish COMPENSATING, leases, attempts (every storage)."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from typing import Any

import anyio
import lagom
import pytest

import anycqrs.saga as saga
from anycqrs.saga import SagaStatus, SagaStepStatus, StepAction
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import SagaStorage, StepRecord
from anycqrs.serialization import to_dict

from ._sagas import Journal, OrderContext, OrderSaga

pytestmark = pytest.mark.anyio

ACT, COMP = StepAction.ACT, StepAction.COMPENSATE
STARTED, COMPLETED, FAILED = SagaStepStatus.STARTED, SagaStepStatus.COMPLETED, SagaStepStatus.FAILED


def rec(name: str, action: StepAction, status: SagaStepStatus) -> StepRecord:
    return StepRecord(name, action, status, None, time.time())


def mediator_for(journal: Journal, storage: SagaStorage, **kwargs: Any) -> saga.SagaMediator:
    container = lagom.Container()
    container[Journal] = journal
    return bootstrap(
        di_container=container,
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, OrderSaga),
        saga_storage=storage,
        compensation_retry_delay=0,
        **kwargs,
    )


async def leave_running(
    mediator: saga.SagaMediator, context: OrderContext, steps: int
) -> uuid.UUID:
    sid = uuid.uuid4()
    seen = 0
    async for _ in mediator.stream(context, saga_id=sid):
        seen += 1
        if seen == steps:
            break
    return sid


def log(entries: list[saga.SagaStepEntry]) -> list[str]:
    return [f"{e.action.value}:{e.step_name}:{e.status.value}" for e in entries]


async def test_running_saga_resumes_from_first_step_not_completed(storage: SagaStorage) -> None:
    journal = Journal()
    mediator = mediator_for(journal, storage)
    sid = await leave_running(mediator, OrderContext(order_id=1), steps=1)
    assert await mediator.recover_pending(stale_after=3600) == 0  # not stale yet
    assert await mediator.recover_pending(limit=10, stale_after=0) == 1
    assert journal.names() == ["act:Reserve", "act:Pay", "act:Ship"]
    state = await storage.load_saga_state(sid)
    assert state.status is SagaStatus.COMPLETED
    assert state.recovery_attempts == 1
    assert state.context["items"] == ["book"] and state.context["paid"] == 10
    assert log(await storage.get_step_history(sid)) == [
        "act:Reserve:STARTED",
        "act:Reserve:COMPLETED",
        "act:Pay:STARTED",
        "act:Pay:STARTED",
        "act:Pay:COMPLETED",
        "act:Ship:STARTED",
        "act:Ship:COMPLETED",
    ]
    # completed: nothing more to do, and the lease was released
    assert await mediator.recover(sid) == 0
    assert await mediator.recover_pending(stale_after=0) == 0


async def test_pending_saga_runs_from_the_start(storage: SagaStorage) -> None:
    journal = Journal()
    mediator = mediator_for(journal, storage)
    sid = uuid.uuid4()
    await storage.create_saga(
        sid, "OrderSaga", to_dict(OrderContext(order_id=2)), status=SagaStatus.PENDING
    )
    assert await mediator.recover(str(sid)) == 1
    assert journal.names() == ["act:Reserve", "act:Pay", "act:Ship"]
    assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPLETED


@pytest.mark.parametrize("already_compensated", [False, True])
async def test_compensating_saga_finishes_compensation_never_runs_forward(
    storage: SagaStorage, already_compensated: bool
) -> None:
    journal = Journal()
    mediator = mediator_for(journal, storage)
    sid = uuid.uuid4()
    context = OrderContext(order_id=3, reserved=True, paid=10, items=["book"])
    entries = [
        rec("Reserve", ACT, STARTED),
        rec("Reserve", ACT, COMPLETED),
        rec("Pay", ACT, STARTED),
        rec("Pay", ACT, COMPLETED),
        rec("Ship", ACT, STARTED),
        rec("Ship", ACT, FAILED),
        rec("Pay", COMP, STARTED),
    ]
    if already_compensated:
        entries += [rec("Pay", COMP, COMPLETED), rec("Reserve", COMP, STARTED)]
    await storage.create_saga(
        sid, "OrderSaga", to_dict(context), status=SagaStatus.COMPENSATING, entries=entries
    )
    assert await mediator.recover_pending(stale_after=0) == 1
    expected = (
        ["compensate:Reserve"]
        if already_compensated
        else [
            "compensate:Pay",
            "compensate:Reserve",
        ]
    )
    assert journal.names() == expected
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED
    history = log(await storage.get_step_history(sid))
    assert history[-1] == "compensate:Reserve:COMPLETED"
    assert not [h for h in history[len(entries) :] if h.startswith("act:")]


async def test_step_failing_during_recovery_compensates(storage: SagaStorage) -> None:
    journal = Journal()
    mediator = mediator_for(journal, storage)
    sid = await leave_running(mediator, OrderContext(order_id=4, fail_at="Ship"), steps=2)
    assert await mediator.recover(sid) == 1
    assert journal.names() == [
        "act:Reserve",
        "act:Pay",
        "act:Ship",
        "compensate:Pay",
        "compensate:Reserve",
    ]
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


async def test_unrecoverable_saga_is_given_up_after_max_attempts(
    storage: SagaStorage, caplog: pytest.LogCaptureFixture
) -> None:
    mediator = mediator_for(Journal(), storage, max_recovery_attempts=2)
    sid = uuid.uuid4()
    # a context that no longer fits the class
    await storage.create_saga(sid, "OrderSaga", {"order": 1}, status=SagaStatus.RUNNING)
    with caplog.at_level(logging.ERROR, logger="anycqrs.saga"):
        assert await mediator.recover(sid) == 1
        state = await storage.load_saga_state(sid)
        assert (state.status, state.recovery_attempts) == (SagaStatus.RUNNING, 1)
        assert await mediator.recover(sid) == 1
    state = await storage.load_saga_state(sid)
    assert (state.status, state.recovery_attempts) == (SagaStatus.FAILED, 2)
    assert "recovery attempt 1 failed: DeserializationError" in caplog.text
    assert "giving up" in caplog.text and "marked FAILED" in caplog.text


async def test_given_up_compensation_is_compensation_failed(storage: SagaStorage) -> None:
    journal = Journal()
    mediator = mediator_for(journal, storage, max_recovery_attempts=1)
    sid = uuid.uuid4()
    context = to_dict(OrderContext(order_id=8, reserved=True))
    entries = [
        rec("Reserve", ACT, COMPLETED),
        rec("Pay", ACT, FAILED),
        rec("Reserve", COMP, STARTED),
    ]
    await storage.create_saga(
        sid, "OrderSaga", context, status=SagaStatus.COMPENSATING, entries=entries
    )
    await storage.claim(owner="someone", lease_seconds=0, saga_id=sid)  # attempt 1, crashed
    assert await mediator.recover_pending(stale_after=0) == 1  # attempt 2 > max
    assert journal.names() == []
    # the steps are left undone: not plain FAILED
    assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPENSATION_FAILED
    assert await mediator.recover_pending(stale_after=0) == 0  # past the limit
    assert await mediator.recover(sid) == 1  # the operator's retry
    assert journal.names() == ["compensate:Reserve"]
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


async def test_over_the_limit_is_failed_without_running(storage: SagaStorage) -> None:
    journal = Journal()
    mediator = mediator_for(journal, storage, max_recovery_attempts=1)
    sid = uuid.uuid4()
    await storage.create_saga(
        sid, "OrderSaga", to_dict(OrderContext(order_id=5)), status=SagaStatus.RUNNING
    )
    await storage.claim(owner="someone", lease_seconds=0, saga_id=sid)  # attempt 1, crashed
    assert await mediator.recover(sid) == 1  # attempt 2 > max
    assert journal.names() == []
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


async def test_workers_never_recover_one_saga_at_once(make_storage: Any) -> None:
    journal = Journal()
    first = mediator_for(journal, make_storage())
    ids = [await leave_running(first, OrderContext(order_id=n), steps=1) for n in range(8)]
    journals = [Journal() for _ in range(3)]
    workers = [mediator_for(j, make_storage()) for j in journals]
    handled: list[int] = []

    async def work(mediator: saga.SagaMediator) -> None:
        while True:
            count = await mediator.recover_pending(limit=2, stale_after=0)
            if not count:
                return
            handled.append(count)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for mediator in workers:
                tg.start_soon(work, mediator)
    assert sum(handled) == len(ids)
    acts = Counter(name for j in journals for name in j.names())
    assert acts == {"act:Pay": len(ids), "act:Ship": len(ids)}
    storage = make_storage()
    for sid in ids:
        assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPLETED


async def test_leased_saga_is_skipped_and_stale_runner_is_fenced(storage: SagaStorage) -> None:
    journal = Journal()
    mediator = mediator_for(journal, storage)
    sid = await leave_running(mediator, OrderContext(order_id=6), steps=1)
    await storage.claim(owner="other-worker", lease_seconds=600, saga_id=sid)
    assert await mediator.recover(sid) == 0
    assert await mediator.recover_pending(stale_after=0) == 0
    # the original runner resuming now is fenced off by the claim's version bump
    state = await storage.load_saga_state(sid)
    with pytest.raises(Exception) as caught:
        await storage.save(sid, state.version - 1, status=SagaStatus.FAILED)
    assert "modified concurrently" in str(caught.value)


async def test_recovery_does_not_swallow_storage_errors_silently(
    storage: SagaStorage, caplog: pytest.LogCaptureFixture
) -> None:
    class Racing(saga.SagaStepHandler[OrderContext, None]):
        step_name = "Pay"

        async def act(self, context: OrderContext) -> None:
            # someone else takes the saga over while this step runs
            state = await storage.load_saga_state(self.saga_id)
            await storage.save(self.saga_id, state.version, status=SagaStatus.RUNNING)

    class RacingSaga(saga.Saga[OrderContext]):
        saga_name = "OrderSaga"
        steps = [OrderSaga.steps[0], Racing, OrderSaga.steps[2]]

    journal = Journal()
    sid = await leave_running(mediator_for(journal, storage), OrderContext(order_id=7), steps=1)
    container = lagom.Container()
    container[Journal] = journal
    racing = bootstrap(
        di_container=container,
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, RacingSaga),
        saga_storage=storage,
    )
    with caplog.at_level(logging.ERROR, logger="anycqrs.saga"):
        assert await racing.recover(sid) == 1
    assert "modified concurrently" in caplog.text
    assert (await storage.load_saga_state(sid)).status is SagaStatus.RUNNING


async def test_giving_up_on_a_running_saga_compensates_what_it_did(
    storage: SagaStorage, caplog: pytest.LogCaptureFixture
) -> None:
    """Workers that die mid-recovery use up its attempts: the saga is rolled back,
    never left FAILED with steps done."""
    journal = Journal()
    mediator = mediator_for(journal, storage, max_recovery_attempts=2)
    sid = await leave_running(mediator, OrderContext(order_id=1), steps=1)
    for _ in range(2):  # two recovery workers claim it and die (their leases expire)
        assert await storage.claim(owner="killed", lease_seconds=0.0, saga_id=sid)
    with caplog.at_level(logging.ERROR, logger="anycqrs.saga"):
        assert await mediator.recover(sid) == 1
    assert journal.names() == ["act:Reserve", "compensate:Reserve"]
    state = await storage.load_saga_state(sid)
    assert state.status is SagaStatus.FAILED
    assert "giving up" in caplog.text and "compensating it" in caplog.text
    assert log(await storage.get_step_history(sid))[-1] == "compensate:Reserve:COMPLETED"
