"""Forward iteration: steps run and persisted, events, stopping early, cancellation."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs.saga as saga
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.errors import (
    EventDispatchError,
)
from anycqrs.events import EventHandler, EventMap
from anycqrs.messages import NotificationEvent
from anycqrs.saga import SagaStatus, SagaStepStatus
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import MemorySagaStorage, SagaStorage

from ._sagas import (
    Gate,
    Journal,
    OrderContext,
    Pay,
    Reserve,
    Reserved,
    Ship,
    gated,
    history,
    make_mediator,
)

pytestmark = pytest.mark.anyio


async def test_runs_every_step_and_persists(storage: SagaStorage) -> None:
    journal = Journal()
    mediator = make_mediator(journal, storage)
    context = OrderContext(order_id=1)
    results = [r async for r in mediator.stream(context)]
    assert [r.step_type for r in results] == [Reserve, Pay, Ship]
    assert [r.response for r in results] == ["reserved", 10, "shipped"]
    sid = results[0].saga_id
    assert all(r.saga_id == sid for r in results)
    state = await storage.load_saga_state(sid)
    assert state.status is SagaStatus.COMPLETED
    assert state.context == {
        "order_id": 1,
        "items": ["book"],
        "reserved": True,
        "paid": 10,
        "shipped_by": "fast",
        "fail_at": None,
    }
    assert state.version == 4  # create + one write per step
    assert history(await storage.get_step_history(sid)) == [
        "act:Reserve:STARTED",
        "act:Reserve:COMPLETED",
        "act:Pay:STARTED",
        "act:Pay:COMPLETED",
        "act:Ship:STARTED",
        "act:Ship:COMPLETED",
    ]


class GatedPay(Pay):
    step_name = "Pay"

    def __init__(self, journal: Journal, gate: Gate) -> None:
        super().__init__(journal)
        self.gate = gate

    async def act(self, context: OrderContext) -> Any:
        self.gate.entered.set()
        await self.gate.release.wait()
        return await super().act(context)


class GatedSaga(saga.Saga[OrderContext]):
    steps = [Reserve, GatedPay, Ship]


async def test_cancelled_during_act_leaves_saga_running_and_resumable() -> None:
    journal, gate, storage = Journal(), Gate(), MemorySagaStorage()
    mediator = gated(journal, gate, storage, GatedSaga)
    sid = uuid.uuid4()
    context = OrderContext(order_id=6)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                await mediator.run(context, saga_id=sid)

            tg.start_soon(consume)
            await gate.entered.wait()
            tg.cancel_scope.cancel()
    state = await storage.load_saga_state(sid)
    assert state.status is SagaStatus.RUNNING
    assert "compensate" not in " ".join(journal.names())
    # resume through stream with the same id: runs the rest only
    gate.release.set()
    fresh = OrderContext(order_id=0)
    results = [r async for r in mediator.stream(fresh, saga_id=sid)]
    assert [r.step_type for r in results] == [GatedPay, Ship]
    assert fresh.order_id == 6 and fresh.reserved and fresh.shipped_by == "fast"
    assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPLETED
    entries = await storage.get_step_history(sid)
    assert entries[3].details == {"resumed": True}
    # a completed saga yields nothing
    assert [r async for r in mediator.stream(OrderContext(order_id=6), saga_id=sid)] == []


@pytest.mark.parametrize("stop_after", [1, 2])
async def test_breaking_out_early_leaves_saga_running(stop_after: int) -> None:
    journal, storage = Journal(), MemorySagaStorage()
    mediator = make_mediator(journal, storage)
    sid = uuid.uuid4()
    seen = 0
    async for _ in mediator.stream(OrderContext(order_id=8), saga_id=sid):
        seen += 1
        if seen == stop_after:
            break
    state = await storage.load_saga_state(sid)
    assert state.status is SagaStatus.RUNNING
    assert len(journal.calls) == stop_after
    assert await mediator.recover(sid) == 1
    assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPLETED
    assert len([c for c in journal.calls if c[0] == "act"]) == 3


async def test_consumer_timeout_while_iterating_leaves_saga_running() -> None:
    journal, storage = Journal(), MemorySagaStorage()
    mediator = make_mediator(journal, storage)
    sid = uuid.uuid4()
    stream = mediator.stream(OrderContext(order_id=9), saga_id=sid)
    with anyio.move_on_after(0.01):
        async for _ in stream:
            await anyio.sleep(10)
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await storage.load_saga_state(sid)).status is SagaStatus.RUNNING


async def test_step_events_dispatched_before_result_and_published() -> None:
    seen: list[str] = []

    class OnReserved(EventHandler[Reserved]):
        async def handle(self, event: Reserved) -> None:
            seen.append(f"event:{event.order_id}")

    broker = InMemoryMessageBroker()

    @attrs.frozen
    class Shipped:
        order_id: int

    class NotifyShip(Ship):
        step_name = "Ship"

        async def work(self, context: OrderContext) -> Any:
            self.emit(NotificationEvent(payload=Shipped(context.order_id), topic="orders"))
            return await super().work(context)

    class EventSaga(saga.Saga[OrderContext]):
        steps = [Reserve, NotifyShip]

    events = EventMap()
    events.bind(Reserved, OnReserved)
    journal = Journal()
    container = lagom.Container()
    container[Journal] = journal
    mediator = bootstrap(
        di_container=container,
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, EventSaga),
        domain_events_mapper=events,
        message_broker=broker,
    )
    async for result in mediator.stream(OrderContext(order_id=11)):
        seen.append(f"result:{result.step_type.step_name}")
    assert seen == ["event:11", "result:Reserve", "result:Ship"]
    assert [m.message_name for m in broker.messages] == ["Shipped"]
    assert mediator.message_broker is broker


async def test_event_failure_compensates_the_step_too() -> None:
    class Broken(EventHandler[Reserved]):
        async def handle(self, event: Reserved) -> None:
            raise ValueError("handler down")

    events = EventMap()
    events.bind(Reserved, Broken)
    journal, storage = Journal(), MemorySagaStorage()
    mediator = make_mediator(journal, storage, domain_events_mapper=events)
    sid = uuid.uuid4()
    with pytest.raises(EventDispatchError) as caught:
        await mediator.run(OrderContext(order_id=12), saga_id=sid)
    assert caught.value.response == "reserved"
    assert journal.names() == ["act:Reserve", "compensate:Reserve"]
    entries = await storage.get_step_history(sid)
    assert entries[1].status is SagaStepStatus.FAILED
    assert entries[1].details is not None and entries[1].details["stage"] == "events"
