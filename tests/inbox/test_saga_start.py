"""Starting a saga from a consumed event: the derived saga id makes a
redelivery resume (or skip) the saga the first delivery started, never
start a second one."""

from __future__ import annotations

import anyio
import attrs
import lagom
import pytest

import anycqrs
import anycqrs.saga.bootstrap
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxTransaction, SqliteInbox
from anycqrs.saga import SagaMediator, SagaStatus, saga_id_for
from anycqrs.saga.storage import MemorySagaStorage

from .inbox_helpers import Paid, paid

pytestmark = pytest.mark.anyio

Event = anycqrs.NotificationEvent[Paid]


@attrs.define
class OrderContext(anycqrs.SagaContext):
    order_id: int


class Probe:
    def __init__(self) -> None:
        self.acts: list[str] = []
        self.block_b = False
        self.crash_after_saga = False
        self.in_b = anyio.Event()


class A(anycqrs.SagaStepHandler[OrderContext, None]):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def act(self, context: OrderContext) -> None:
        self.probe.acts.append("A")


class B(anycqrs.SagaStepHandler[OrderContext, None]):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def act(self, context: OrderContext) -> None:
        self.probe.acts.append("B")
        if self.probe.block_b:
            self.probe.in_b.set()
            await anyio.sleep_forever()


class OrderSaga(anycqrs.Saga[OrderContext]):
    steps = [A, B]


class StartOrder(anycqrs.EventHandler[Event]):
    def __init__(self, sagas: SagaMediator, probe: Probe, tx: InboxTransaction) -> None:
        self.sagas = sagas
        self.probe = probe
        self.tx = tx

    async def handle(self, event: Event) -> None:
        context = OrderContext(order_id=event.payload.order_id)
        async for _ in self.sagas.stream(context, saga_id=saga_id_for(event, OrderSaga)):
            pass
        await self.tx.run(lambda connection: None)
        if self.probe.crash_after_saga:
            raise RuntimeError("crash before the inbox commit")


def build(tmp_path: object, storage: MemorySagaStorage, probe: Probe) -> anycqrs.EventMediator:
    container = lagom.Container()
    container[Probe] = probe
    container[SagaMediator] = anycqrs.saga.bootstrap.bootstrap(
        di_container=container,
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, OrderSaga),
        saga_storage=storage,
    )
    return bootstrap(
        di_container=container,
        events_mapper=lambda events: events.bind(Event, StartOrder),
        inbox=SqliteInbox(f"{tmp_path}/app.db"),
    )


class TestSagaIdFor:
    """The derived id: stable per (saga, event), distinct otherwise."""

    async def test_derivation(self) -> None:
        event = paid(1)
        assert saga_id_for(event, OrderSaga) == saga_id_for(event.event_id, "OrderSaga")
        assert saga_id_for(event, OrderSaga) != saga_id_for(paid(1), OrderSaga)
        assert saga_id_for(event, OrderSaga) != saga_id_for(event, "OtherSaga")
        with pytest.raises(TypeError, match="UUID event_id"):
            saga_id_for("not an event", OrderSaga)  # type: ignore[arg-type]


class TestRedelivery:
    """A redelivered start resumes or skips the one saga."""

    async def test_completed_saga_is_not_run_again(self, tmp_path: object) -> None:
        storage, probe = MemorySagaStorage(), Probe()
        mediator = build(tmp_path, storage, probe)
        event = paid(5)
        probe.crash_after_saga = True
        with pytest.raises(RuntimeError, match="crash"):
            await mediator.send(event)
        probe.crash_after_saga = False
        await mediator.send(event)  # redelivered: the saga is COMPLETED, nothing runs
        await mediator.send(event)  # a duplicate: the handler is skipped
        assert probe.acts == ["A", "B"]
        state = await storage.load_saga_state(saga_id_for(event, OrderSaga))
        assert state.status is SagaStatus.COMPLETED

    async def test_interrupted_saga_resumes(self, tmp_path: object) -> None:
        storage, probe = MemorySagaStorage(), Probe()
        mediator = build(tmp_path, storage, probe)
        event = paid(6)
        probe.block_b = True
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(mediator.send, event)
                await probe.in_b.wait()
                group.cancel_scope.cancel()  # the consumer dies during step B
        sid = saga_id_for(event, OrderSaga)
        assert (await storage.load_saga_state(sid)).status is SagaStatus.RUNNING
        probe.block_b = False
        await mediator.send(event)  # resumes at B; A is not run again
        assert probe.acts == ["A", "B", "B"]
        assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPLETED
