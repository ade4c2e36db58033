"""The saga engine: forward run, events, middlewares, compensation, cancellation."""

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
    SagaDefinitionError,
    SagaError,
    SagaStateError,
)
from anycqrs.events import EventHandler, EventMap
from anycqrs.messages import NotificationEvent
from anycqrs.saga import SagaStatus, SagaStepStatus
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import MemorySagaStorage, SagaStorage

from ._sagas import (
    Boom,
    FallbackSaga,
    Journal,
    OrderContext,
    OrderSaga,
    Pay,
    Reserve,
    Reserved,
    Ship,
    ShipSlow,
)

pytestmark = pytest.mark.anyio


def make_mediator(
    journal: Journal,
    storage: SagaStorage | None = None,
    saga_type: type = OrderSaga,
    **kwargs: Any,
) -> saga.SagaMediator:
    container = lagom.Container()
    container[Journal] = journal
    return bootstrap(
        di_container=container,
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, saga_type),
        saga_storage=storage,
        compensation_retry_delay=0,
        **kwargs,
    )


def history(entries: list[saga.SagaStepEntry]) -> list[str]:
    return [f"{e.action.value}:{e.step_name}:{e.status.value}" for e in entries]


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
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


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
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


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


class Gate:
    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()


class GatedPay(Pay):
    step_name = "Pay"

    def __init__(self, journal: Journal, gate: Gate) -> None:
        super().__init__(journal)
        self.gate = gate

    async def act(self, context: OrderContext) -> Any:
        self.gate.entered.set()
        await self.gate.release.wait()
        return await super().act(context)


class GatedCompensation(Reserve):
    step_name = "Reserve"

    def __init__(self, journal: Journal, gate: Gate) -> None:
        super().__init__(journal)
        self.gate = gate

    async def compensate(self, context: OrderContext) -> None:
        self.gate.entered.set()
        await self.gate.release.wait()
        await super().compensate(context)


class GatedSaga(saga.Saga[OrderContext]):
    steps = [Reserve, GatedPay, Ship]


class GatedCompensationSaga(saga.Saga[OrderContext]):
    steps = [GatedCompensation, Pay]


def gated(journal: Journal, gate: Gate, storage: SagaStorage, saga_type: type) -> Any:
    container = lagom.Container()
    container[Journal] = journal
    container[Gate] = gate
    return bootstrap(
        di_container=container,
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, saga_type),
        saga_storage=storage,
        compensation_retry_delay=0,
    )


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


async def test_middlewares_wrap_each_step() -> None:
    calls: list[str] = []

    class Recorder:
        async def __call__(self, message: Any, call_next: Any) -> Any:
            calls.append(type(message).__name__)
            result = await call_next(message)
            calls.append(f"-> {result}")
            return result

    mediator = make_mediator(Journal(), middlewares=[Recorder()])
    await mediator.run(OrderContext(order_id=13))
    assert calls == [
        "OrderContext",
        "-> reserved",
        "OrderContext",
        "-> 10",
        "OrderContext",
        "-> shipped",
    ]


async def test_several_middlewares_nest_in_order_and_can_replace_results() -> None:
    calls: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, message: Any, call_next: Any) -> Any:
            calls.append(f"{self.name}>")
            result = await call_next(message)
            calls.append(f"<{self.name}")
            return result

    class Upper:
        async def __call__(self, message: Any, call_next: Any) -> Any:
            result = await call_next(message)
            return result.upper() if isinstance(result, str) else result

    mediator = make_mediator(Journal(), middlewares=[Named("a"), Upper(), Named("b")])
    results = await mediator.run(OrderContext(order_id=14))
    assert [r.response for r in results] == ["RESERVED", 10, "SHIPPED"]
    assert calls == ["a>", "b>", "<b", "<a"] * 3


class Breaker:
    def __init__(self, open_: bool = False) -> None:
        self.open = open_
        self.events: list[str] = []

    async def is_open(self, key: str) -> bool:
        return self.open

    async def record_success(self, key: str) -> None:
        self.events.append(f"ok:{key.rsplit('.', 1)[-1]}")

    async def record_failure(self, key: str, error: BaseException) -> None:
        self.events.append(f"fail:{key.rsplit('.', 1)[-1]}:{type(error).__name__}")


async def test_fallback_restores_context_and_compensates_only_the_winner(
    storage: SagaStorage,
) -> None:
    class Dirty(Ship):
        step_name = "Ship"

        async def work(self, context: OrderContext) -> Any:
            context.paid = 999
            context.items.append("dirty")
            raise Boom("primary down")

    breaker = Breaker()

    class DirtySaga(saga.Saga[OrderContext]):
        saga_name = "DirtySaga"
        steps = [
            Reserve,
            saga.Fallback(step=Dirty, fallback=ShipSlow, circuit_breaker=breaker),
            Pay,
        ]

    journal = Journal()
    mediator = make_mediator(journal, storage, DirtySaga)
    context = OrderContext(order_id=14, fail_at="Pay")
    sid = uuid.uuid4()
    with pytest.raises(Boom, match="Pay"):
        async for result in mediator.stream(context, saga_id=sid):
            if result.step_type is ShipSlow:
                assert context.paid == 0 and context.items == ["book"]
                assert context.shipped_by == "slow"
    assert breaker.events == ["fail:Dirty:Boom"]
    assert journal.names() == [
        "act:Reserve",
        "act:Ship",
        "act:ShipSlow",
        "act:Pay",
        "compensate:ShipSlow",
        "compensate:Reserve",
    ]
    assert history(await storage.get_step_history(sid))[:6] == [
        "act:Reserve:STARTED",
        "act:Reserve:COMPLETED",
        "act:Ship:STARTED",
        "act:Ship:FAILED",
        "act:ShipSlow:STARTED",
        "act:ShipSlow:COMPLETED",
    ]


async def test_fallback_not_used_for_other_errors_and_breaker_open_skips_primary() -> None:
    class Wrong(Ship):
        step_name = "Ship"

        async def work(self, context: OrderContext) -> Any:
            raise KeyError("not a fallback case")

    class NarrowSaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Wrong, fallback=ShipSlow, failure_exceptions=Boom)]

    journal = Journal()
    with pytest.raises(KeyError):
        await make_mediator(journal, saga_type=NarrowSaga).run(OrderContext(order_id=15))
    assert journal.names() == ["act:Ship"]

    breaker = Breaker(open_=True)

    class OpenSaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Ship, fallback=ShipSlow, circuit_breaker=breaker)]

    journal = Journal()
    storage = MemorySagaStorage()
    results = await make_mediator(journal, storage, OpenSaga).run(OrderContext(order_id=16))
    assert [r.step_type for r in results] == [ShipSlow]
    assert journal.names() == ["act:ShipSlow"]
    entries = await storage.get_step_history(results[0].saga_id)
    assert entries[1].details == {"error": "circuit breaker open", "fallback": True}

    breaker = Breaker()

    class HealthySaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Ship, fallback=ShipSlow, circuit_breaker=breaker)]

    results = await make_mediator(Journal(), saga_type=HealthySaga).run(OrderContext(order_id=17))
    assert [r.step_type for r in results] == [Ship]
    assert breaker.events == ["ok:Ship"]


async def test_fallback_failure_is_the_step_failure() -> None:
    class Down(Ship):
        step_name = "Ship"

        async def work(self, context: OrderContext) -> Any:
            raise Boom("primary down")

    class Both(saga.Saga[OrderContext]):
        steps = [Reserve, saga.Fallback(step=Down, fallback=ShipSlow)]

    journal, storage = Journal(), MemorySagaStorage()
    sid = uuid.uuid4()
    with pytest.raises(Boom, match="ShipSlow"):
        await make_mediator(journal, storage, Both).run(
            OrderContext(order_id=18, fail_at="ShipSlow"), saga_id=sid
        )
    assert journal.names() == ["act:Reserve", "act:Ship", "act:ShipSlow", "compensate:Reserve"]
    assert history(await storage.get_step_history(sid))[2:6] == [
        "act:Ship:STARTED",
        "act:Ship:FAILED",
        "act:ShipSlow:STARTED",
        "act:ShipSlow:FAILED",
    ]


class Flaky(Pay):
    step_name = "Pay"
    retry_policy = saga.RetryPolicy(attempts=3, delay=0, retry_on=(ConnectionError,))
    failures = 0

    async def work(self, context: OrderContext) -> Any:
        context.paid += 1000  # must be rolled back between attempts
        if type(self).failures:
            type(self).failures -= 1
            raise ConnectionError("flaky")
        return await super().work(context)


class FlakySaga(saga.Saga[OrderContext]):
    steps = [Reserve, Flaky]


async def test_retry_policy_restores_context_between_attempts() -> None:
    Flaky.failures = 2
    journal = Journal()
    context = OrderContext(order_id=19)
    results = await make_mediator(journal, saga_type=FlakySaga).run(context)
    assert results[-1].response == 1010
    assert context.paid == 1010
    assert journal.names().count("act:Pay") == 3

    Flaky.failures = 5
    with pytest.raises(ConnectionError):
        await make_mediator(Journal(), saga_type=FlakySaga).run(OrderContext(order_id=20))


class TooSlow(Pay):
    step_name = "Pay"
    timeout = 0.01

    async def work(self, context: OrderContext) -> Any:
        await anyio.sleep(10)


class TimeoutSaga(saga.Saga[OrderContext]):
    steps = [Reserve, TooSlow]


async def test_step_timeout_is_a_failure() -> None:
    journal, storage = Journal(), MemorySagaStorage()
    sid = uuid.uuid4()
    with anyio.fail_after(5), pytest.raises(TimeoutError):
        await make_mediator(journal, storage, TimeoutSaga).run(
            OrderContext(order_id=21), saga_id=sid
        )
    assert journal.names()[-1] == "compensate:Reserve"
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


async def test_idempotency_key_and_saga_id_available_to_steps() -> None:
    keys: list[str] = []

    class Keyed(Reserve):
        step_name = "reserve-v1"

        async def work(self, context: OrderContext) -> Any:
            keys.append(self.idempotency_key)
            keys.append(str(self.saga_id))
            return None

    class KeySaga(saga.Saga[OrderContext]):
        steps = [Keyed]

    sid = uuid.uuid4()
    await make_mediator(Journal(), saga_type=KeySaga).run(
        OrderContext(order_id=22), saga_id=str(sid)
    )
    assert keys == [f"{sid}:reserve-v1", str(sid)]
    with pytest.raises(RuntimeError, match="not running inside a saga"):
        _ = Keyed(Journal()).idempotency_key


async def test_unbound_context_and_wrong_resume() -> None:
    @attrs.define
    class Other(saga.SagaContext):
        x: int

    mediator = make_mediator(Journal())
    with pytest.raises(SagaError, match="No saga bound for"):
        await mediator.run(Other(1))
    journal, storage = Journal(), MemorySagaStorage()
    mediator = make_mediator(journal, storage)
    sid = uuid.uuid4()
    with pytest.raises(Boom):
        await mediator.run(OrderContext(order_id=1, fail_at="Pay"), saga_id=sid)
    with pytest.raises(SagaStateError, match="FAILED"):
        await mediator.run(OrderContext(order_id=1), saga_id=sid)
    other = make_mediator(journal, storage, FallbackSaga)
    with pytest.raises(SagaStateError, match="not a FallbackOrderSaga"):
        await other.run(OrderContext(order_id=1), saga_id=sid)


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


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="compensation_retry_count"):
        make_mediator(Journal(), compensation_retry_count=0)
    with pytest.raises(ValueError, match="attempts"):
        saga.RetryPolicy(attempts=0)
    assert SagaStatus.COMPLETED.terminal and not SagaStatus.RUNNING.terminal


async def test_fallback_with_the_builtin_circuit_breaker() -> None:
    from anycqrs._breaker import CircuitBreaker

    class Down(Ship):
        step_name = "Ship"
        calls = 0

        async def work(self, context: OrderContext) -> Any:
            type(self).calls += 1
            raise Boom("down")

    breaker = CircuitBreaker(fail_max=1, reset_timeout=60)

    class BreakerSaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Down, fallback=ShipSlow, circuit_breaker=breaker)]

    mediator = make_mediator(Journal(), saga_type=BreakerSaga)
    for n in range(3):
        results = await mediator.run(OrderContext(order_id=n))
        assert [r.step_type for r in results] == [ShipSlow]
    assert Down.calls == 1  # the open circuit skipped the primary afterwards
    with pytest.raises(SagaDefinitionError, match="circuit_breaker"):
        saga.Fallback(step=Ship, fallback=ShipSlow, circuit_breaker=object())
