"""Compensation: reverse order, retries, timeouts, the phase deadline, shielding."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import anyio
import attrs
import pytest

import anycqrs.saga as saga
from anycqrs import RetryPolicy
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.container import as_container
from anycqrs.events import EventHandler, EventMap
from anycqrs.events._dispatcher import EventDispatcher
from anycqrs.messages import DomainEvent
from anycqrs.middlewares import MiddlewareChain
from anycqrs.saga import SagaStatus, SagaStepStatus
from anycqrs.saga._compensation import Compensator
from anycqrs.saga._run import Journal as Journal_
from anycqrs.saga._snapshot import Snapshots
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import MemorySagaStorage, SagaStorage

from ._sagas import (
    Boom,
    FakeSleep,
    Gate,
    Journal,
    OrderContext,
    Pay,
    Reserve,
    Reserved,
    Ship,
    container_of,
    gated,
    history,
    make_mediator,
    stored_run,
)

pytestmark = pytest.mark.anyio


async def test_failure_compensates_in_reverse_on_same_instances(storage: SagaStorage) -> None:
    journal = Journal()
    mediator = make_mediator(journal, storage)
    context = OrderContext(order_id=2, fail_at="Ship")
    seen: list[saga.SagaStepResult[Any]] = []
    with pytest.raises(Boom, match="Ship"):
        async for result in mediator.stream(context):
            seen.append(result)
    assert len(seen) == 2
    assert journal.names() == [
        "act:Reserve",
        "act:Pay",
        "act:Ship",
        "compensate:Pay",
        "compensate:Reserve",
    ]
    ids = {name: ident for what, name, ident in journal.calls if what == "act"}
    for what, name, ident in journal.calls:
        if what == "compensate":
            assert ident == ids[name]
    state = await storage.load_saga_state(seen[0].saga_id)
    assert state.status is SagaStatus.FAILED
    assert history(await storage.get_step_history(seen[0].saga_id)) == [
        "act:Reserve:STARTED",
        "act:Reserve:COMPLETED",
        "act:Pay:STARTED",
        "act:Pay:COMPLETED",
        "act:Ship:STARTED",
        "act:Ship:FAILED",
        "compensate:Pay:STARTED",
        "compensate:Pay:COMPLETED",
        "compensate:Reserve:STARTED",
        "compensate:Reserve:COMPLETED",
    ]
    failed = (await storage.get_step_history(seen[0].saga_id))[5]
    assert failed.details is not None and "Boom" in failed.details["error"]


async def test_first_step_failure_has_nothing_to_compensate() -> None:
    journal = Journal()
    storage = MemorySagaStorage()
    mediator = make_mediator(journal, storage)
    sid = uuid.uuid4()
    with pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=3, fail_at="Reserve"), saga_id=sid)
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED
    assert history(await storage.get_step_history(sid)) == [
        "act:Reserve:STARTED",
        "act:Reserve:FAILED",
    ]


class FlakyCompensation(Pay):
    step_name = "Pay"
    failures = 0

    async def compensate(self, context: OrderContext) -> None:
        await super().compensate(context)
        if type(self).failures > 0:
            type(self).failures -= 1
            raise RuntimeError("try again")


class AlwaysFailingCompensation(Reserve):
    step_name = "Reserve"

    async def compensate(self, context: OrderContext) -> None:
        await super().compensate(context)
        raise RuntimeError("cannot undo")


class RetrySaga(saga.Saga[OrderContext]):
    steps = [AlwaysFailingCompensation, FlakyCompensation, Ship]


async def test_compensation_retries_and_failed_compensation_does_not_stop_others() -> None:
    journal = Journal()
    storage = MemorySagaStorage()
    FlakyCompensation.failures = 2
    mediator = make_mediator(journal, storage, RetrySaga, compensation_retry_count=3)
    sid = uuid.uuid4()
    with pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=4, fail_at="Ship"), saga_id=sid)
    assert journal.names().count("compensate:Pay") == 3
    assert journal.names().count("compensate:Reserve") == 3
    entries = await storage.get_step_history(sid)
    tail = [(e.action.value, e.step_name, e.status, e.details) for e in entries[-4:]]
    assert tail[0][:3] == ("compensate", "Pay", SagaStepStatus.STARTED)
    assert tail[1] == ("compensate", "Pay", SagaStepStatus.COMPLETED, {"attempts": 3})
    assert tail[3][:3] == ("compensate", "Reserve", SagaStepStatus.FAILED)
    assert tail[3][3] == {"attempts": 3, "error": "RuntimeError: cannot undo"}
    assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPENSATION_FAILED


class SlowCompensation(Reserve):
    step_name = "Reserve"
    timeout = 0.01
    slow = True

    async def compensate(self, context: OrderContext) -> None:
        await super().compensate(context)
        if type(self).slow:
            await anyio.sleep(10)


class SlowCompensationSaga(saga.Saga[OrderContext]):
    steps = [SlowCompensation, Pay]


async def test_step_timeout_bounds_each_compensation_attempt() -> None:
    SlowCompensation.slow = True
    journal = Journal()
    storage = MemorySagaStorage()
    mediator = make_mediator(journal, storage, SlowCompensationSaga, compensation_retry_count=2)
    sid = uuid.uuid4()
    with anyio.fail_after(5), pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=5, fail_at="Pay"), saga_id=sid)
    assert journal.names().count("compensate:Reserve") == 2
    last = (await storage.get_step_history(sid))[-1]
    assert last.status is SagaStepStatus.FAILED and "TimeoutError" in str(last.details)
    assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPENSATION_FAILED


class Hanging(Reserve):
    step_name = "Reserve"
    hang = True

    async def compensate(self, context: OrderContext) -> None:
        await super().compensate(context)
        if type(self).hang:
            await anyio.sleep(10)


class HangingSaga(saga.Saga[OrderContext]):
    steps = [Hanging, Pay]


async def test_compensation_phase_deadline_leaves_saga_compensating(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Hanging.hang = True
    journal = Journal()
    storage = MemorySagaStorage()
    mediator = make_mediator(journal, storage, HangingSaga, compensation_timeout=0.05)
    sid = uuid.uuid4()
    with anyio.fail_after(5), pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=5, fail_at="Pay"), saga_id=sid)
    assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPENSATING
    assert "did not finish within" in caplog.text
    Hanging.hang = False
    assert await mediator.recover(sid) == 1
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED
    assert journal.names()[-1] == "compensate:Reserve"


class GatedCompensation(Reserve):
    step_name = "Reserve"

    def __init__(self, journal: Journal, gate: Gate) -> None:
        super().__init__(journal)
        self.gate = gate

    async def compensate(self, context: OrderContext) -> None:
        self.gate.entered.set()
        await self.gate.release.wait()
        await super().compensate(context)


class GatedCompensationSaga(saga.Saga[OrderContext]):
    steps = [GatedCompensation, Pay]


async def test_cancelled_caller_cannot_interrupt_compensation() -> None:
    journal, gate, storage = Journal(), Gate(), MemorySagaStorage()
    mediator = gated(journal, gate, storage, GatedCompensationSaga)
    sid = uuid.uuid4()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                with pytest.raises(Boom):
                    await mediator.run(OrderContext(order_id=7, fail_at="Pay"), saga_id=sid)

            tg.start_soon(consume)
            await gate.entered.wait()
            tg.cancel_scope.cancel()
            gate.release.set()
    assert journal.names()[-1] == "compensate:Reserve"
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


class Undo(Reserve):
    """Compensation failing its first `failures` calls."""

    step_name = "Reserve"

    def __init__(self, journal: Journal, failures: int) -> None:
        super().__init__(journal)
        self.failures = failures
        self.calls = 0

    async def compensate(self, context: OrderContext) -> None:
        self.calls += 1
        self.emit(Reserved(order_id=context.order_id))  # dropped with a failed attempt
        if self.calls <= self.failures:
            raise RuntimeError(f"undo failed {self.calls}")
        self.events.clear()


def compensator(storage: MemorySagaStorage, policy: RetryPolicy, sleep: FakeSleep) -> Compensator:
    return Compensator(
        journal=Journal_(storage),
        snapshots=Snapshots(),
        dispatcher=EventDispatcher(
            EventMap(),
            as_container(None),
            InMemoryMessageBroker(),
            MiddlewareChain(),
            concurrent=False,
            max_concurrent=1,
        ),
        policy=policy,
        timeout=60,
        sleep=sleep,
    )


class TestCompensationRetry:
    """Compensations retried through the one retry loop, on an injected sleep."""

    async def test_backs_off_by_the_policy_and_logs_each_failed_attempt(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        storage, sleep = MemorySagaStorage(), FakeSleep()
        policy = RetryPolicy(attempts=4, delay=0.5, multiplier=2.0, max_delay=1.5)
        run = await stored_run(storage, OrderContext(order_id=1))
        undo = Undo(Journal(), failures=3)
        run.done = [undo]
        with caplog.at_level(logging.WARNING, logger="anycqrs.saga"):
            await compensator(storage, policy, sleep).compensate(run)
        assert sleep.delays == [0.5, 1.0, 1.5]
        assert undo.calls == 4 and not undo.events
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert [w.split(", ")[1].split(" failed")[0] for w in warnings] == [
            "attempt 1/4",
            "attempt 2/4",
            "attempt 3/4",
        ]
        last = (await storage.get_step_history(run.saga_id))[-1]
        assert (last.status, last.details) == (SagaStepStatus.COMPLETED, {"attempts": 4})
        assert (await storage.load_saga_state(run.saga_id)).status is SagaStatus.FAILED

    async def test_gives_up_after_the_last_attempt(self, caplog: pytest.LogCaptureFixture) -> None:
        storage, sleep = MemorySagaStorage(), FakeSleep()
        policy = RetryPolicy(attempts=3, delay=0.25, multiplier=3.0)
        run = await stored_run(storage, OrderContext(order_id=2))
        undo = Undo(Journal(), failures=10)
        run.done = [undo]
        await compensator(storage, policy, sleep).compensate(run)
        assert sleep.delays == [0.25, 0.75]
        assert undo.calls == 3
        assert caplog.text.count("failed: RuntimeError") == 3  # each attempt, the last too
        assert "failed after 3 attempts: RuntimeError: undo failed 3" in caplog.text
        last = (await storage.get_step_history(run.saga_id))[-1]
        assert last.status is SagaStepStatus.FAILED
        assert last.details == {"attempts": 3, "error": "RuntimeError: undo failed 3"}

    async def test_an_error_the_policy_does_not_retry_fails_at_once(self) -> None:
        storage, sleep = MemorySagaStorage(), FakeSleep()
        policy = RetryPolicy(attempts=5, delay=1.0, retry_on=ConnectionError)
        run = await stored_run(storage, OrderContext(order_id=3))
        undo = Undo(Journal(), failures=1)
        run.done = [undo]
        await compensator(storage, policy, sleep).compensate(run)
        assert sleep.delays == [] and undo.calls == 1
        last = (await storage.get_step_history(run.saga_id))[-1]
        assert last.details == {"attempts": 1, "error": "RuntimeError: undo failed 1"}


async def test_compensation_retry_policy_keyword() -> None:
    journal, storage = Journal(), MemorySagaStorage()
    FlakyCompensation.failures = 1
    mediator = bootstrap(
        di_container=container_of(journal),
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, RetrySaga),
        saga_storage=storage,
        compensation_retry=RetryPolicy(attempts=2, delay=0),
    )
    sid = uuid.uuid4()
    with pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=4, fail_at="Ship"), saga_id=sid)
    assert journal.names().count("compensate:Pay") == 2
    assert journal.names().count("compensate:Reserve") == 2
    with pytest.raises(ValueError, match="not both"):
        bootstrap(compensation_retry=RetryPolicy(), compensation_retry_count=3)
    with pytest.raises(ValueError, match="not both"):
        bootstrap(compensation_retry=RetryPolicy(), compensation_retry_delay=0)


@attrs.frozen
class Released(DomainEvent):
    order_id: int


class Releasing(Reserve):
    """Emits `Released` when compensated; fails its first `failures` attempts."""

    step_name = "Reserve"
    failures = 0

    async def compensate(self, context: OrderContext) -> None:
        await super().compensate(context)
        self.emit(Released(order_id=context.order_id))
        if type(self).failures:
            type(self).failures -= 1
            raise RuntimeError("not yet")


class ReleasingSaga(saga.Saga[OrderContext]):
    steps = [Releasing, Pay]


@pytest.mark.parametrize("failures", [0, 1])
async def test_compensation_events_are_dispatched_and_their_failure_only_logged(
    failures: int, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    class OnReleased(EventHandler[Released]):
        async def handle(self, event: Released) -> None:
            seen.append(event.order_id)

    class Broken(EventHandler[Released]):
        async def handle(self, event: Released) -> None:
            raise RuntimeError("handler down")

    for handler, expected in ((OnReleased, [7]), (Broken, [])):
        events = EventMap()
        events.bind(Released, handler)
        storage = MemorySagaStorage()
        Releasing.failures = failures
        mediator = make_mediator(Journal(), storage, ReleasingSaga, domain_events_mapper=events)
        sid = uuid.uuid4()
        with pytest.raises(Boom):
            await mediator.run(OrderContext(order_id=7, fail_at="Pay"), saga_id=sid)
        assert seen == expected  # one event: a failed attempt's events are dropped
        seen.clear()
        last = (await storage.get_step_history(sid))[-1]
        assert (last.status, last.details) == (
            SagaStepStatus.COMPLETED,
            {"attempts": failures + 1},
        )
    assert "events of the compensation of Reserve failed: RuntimeError: handler down" in (
        caplog.text
    )
