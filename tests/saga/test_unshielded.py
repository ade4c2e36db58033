"""The part of a compensation phase that cannot wait runs before its shield:
compensations that fail, emit or wait hand over to the shielded rest."""

from __future__ import annotations

import uuid

import anyio
import attrs
import pytest

import anycqrs.saga as saga
from anycqrs.events import EventHandler, EventMap
from anycqrs.messages import DomainEvent
from anycqrs.saga import SagaStatus
from anycqrs.saga._shielded import cannot_wait
from anycqrs.saga.storage import MemorySagaStorage

from ._sagas import (
    Boom,
    Gate,
    Journal,
    OrderContext,
    Pay,
    Reserve,
    Ship,
    gated,
    history,
    make_mediator,
)

pytestmark = pytest.mark.anyio


class TestCannotWait:
    """`cannot_wait` tells coroutine functions that never suspend."""

    def test_a_coroutine_function_without_await_cannot_wait(self) -> None:
        async def quick(context: OrderContext) -> None:
            context.reserved = False

        assert cannot_wait(quick)

    def test_await_async_for_and_async_with_can_wait(self) -> None:
        async def awaits() -> None:
            await anyio.sleep(0)

        async def iterates(items: object) -> None:
            async for _ in items:  # type: ignore[attr-defined]
                pass

        async def enters(manager: object) -> None:
            async with manager:  # type: ignore[attr-defined]
                pass

        async def comprehends(items: object) -> list[object]:
            return [item async for item in items]  # type: ignore[attr-defined]

        assert not any(map(cannot_wait, (awaits, iterates, enters, comprehends)))

    def test_anything_but_a_plain_coroutine_function_is_taken_as_able_to_wait(self) -> None:
        def plain() -> None:
            pass

        async def agen() -> object:
            yield None

        async def quick() -> None:
            pass

        assert not cannot_wait(plain)
        assert not cannot_wait(agen)
        assert not cannot_wait(Reserve.compensate.__get__(object()))  # a bound method
        assert not cannot_wait(None)
        assert cannot_wait(quick)

    def test_the_default_compensate_cannot_wait(self) -> None:
        assert cannot_wait(saga.SagaStepHandler.compensate)


class QuickFlaky(Pay):
    """Compensation that cannot wait and fails its first attempt."""

    step_name = "Pay"
    failures = 0

    async def compensate(self, context: OrderContext) -> None:
        self.journal.add("compensate", self)
        if type(self).failures:
            type(self).failures -= 1
            raise RuntimeError("not yet")


class QuickFlakySaga(saga.Saga[OrderContext]):
    steps = [Reserve, QuickFlaky, Ship]


async def test_a_quick_compensation_that_fails_is_retried_shielded() -> None:
    journal, storage, sid = Journal(), MemorySagaStorage(), uuid.uuid4()
    QuickFlaky.failures = 1
    mediator = make_mediator(journal, storage, QuickFlakySaga)
    with pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=1, fail_at="Ship"), saga_id=sid)
    assert journal.names()[-3:] == ["compensate:Pay", "compensate:Pay", "compensate:Reserve"]
    entries = await storage.get_step_history(sid)
    assert history(entries)[-4:] == [
        "compensate:Pay:STARTED",
        "compensate:Pay:COMPLETED",
        "compensate:Reserve:STARTED",
        "compensate:Reserve:COMPLETED",
    ]
    assert entries[-3].details == {"attempts": 2}
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


@attrs.frozen
class Unpaid(DomainEvent):
    order_id: int


class QuickEmitting(Pay):
    """Compensation that cannot wait and emits an event."""

    step_name = "Pay"

    async def compensate(self, context: OrderContext) -> None:
        self.journal.add("compensate", self)
        self.emit(Unpaid(order_id=context.order_id))


class QuickEmittingSaga(saga.Saga[OrderContext]):
    steps = [Reserve, QuickEmitting, Ship]


async def test_a_quick_compensations_events_are_dispatched_before_the_next() -> None:
    journal, storage, sid = Journal(), MemorySagaStorage(), uuid.uuid4()
    seen: list[str] = []

    class OnUnpaid(EventHandler[Unpaid]):
        async def handle(self, event: Unpaid) -> None:
            await anyio.sleep(0)
            seen.append(f"unpaid {event.order_id} after {journal.names()[-1]}")

    events = EventMap()
    events.bind(Unpaid, OnUnpaid)
    mediator = make_mediator(journal, storage, QuickEmittingSaga, domain_events_mapper=events)
    with pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=3, fail_at="Ship"), saga_id=sid)
    assert seen == ["unpaid 3 after compensate:Pay"]
    assert journal.names()[-1] == "compensate:Reserve"
    state = await storage.load_saga_state(sid)
    assert (state.status, state.version) == (SagaStatus.FAILED, 6)


class Gated(Reserve):
    """Compensation that waits on a gate."""

    step_name = "Reserve"

    def __init__(self, journal: Journal, gate: Gate) -> None:
        super().__init__(journal)
        self.gate = gate

    async def compensate(self, context: OrderContext) -> None:
        self.gate.entered.set()
        await self.gate.release.wait()
        self.journal.add("compensate", self)


class QuickThenGatedSaga(saga.Saga[OrderContext]):
    steps = [Gated, Pay, Ship]


async def test_the_compensations_after_a_quick_one_are_shielded() -> None:
    journal, gate, storage, sid = Journal(), Gate(), MemorySagaStorage(), uuid.uuid4()
    mediator = gated(journal, gate, storage, QuickThenGatedSaga)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                with pytest.raises(Boom):
                    await mediator.run(OrderContext(order_id=7, fail_at="Ship"), saga_id=sid)

            tg.start_soon(consume)
            await gate.entered.wait()  # Pay compensated (unshielded), Reserve waiting
            tg.cancel_scope.cancel()
            gate.release.set()
    assert journal.names()[-2:] == ["compensate:Pay", "compensate:Reserve"]
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


async def test_a_quick_compensation_with_a_timeout_runs_shielded() -> None:
    class TimedPay(Pay):
        step_name = "Pay"
        timeout = 5.0

    class TimedSaga(saga.Saga[OrderContext]):
        steps = [Reserve, TimedPay, Ship]

    journal, storage, sid = Journal(), MemorySagaStorage(), uuid.uuid4()
    with pytest.raises(Boom):
        await make_mediator(journal, storage, TimedSaga).run(
            OrderContext(order_id=1, fail_at="Ship"), saga_id=sid
        )
    assert journal.names()[-2:] == ["compensate:Pay", "compensate:Reserve"]
    assert history(await storage.get_step_history(sid))[-1] == "compensate:Reserve:COMPLETED"
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED
