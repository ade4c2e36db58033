"""Hardening (issue 10): frozen contexts, finished ids, foreign sagas, failed
compensations, and step events dispatched once."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs.saga as saga
from anycqrs.errors import SagaDefinitionError
from anycqrs.events import EventHandler, EventMap
from anycqrs.messages import DomainEvent, Event
from anycqrs.saga import SagaStatus
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import SagaStorage

from ._sagas import Boom, Journal, OrderContext, Pay, Reserve, Ship, history


def noop_step(context: type) -> type[saga.SagaStepHandler[Any, None]]:
    class Noop(saga.SagaStepHandler[context, None]):  # type: ignore[valid-type]
        async def act(self, context: Any) -> None:
            return None

    return Noop


class TestFrozenContext:
    """A context a step can't mutate is refused when the saga class is defined."""

    def test_frozen_attrs_context(self) -> None:
        @attrs.frozen
        class FrozenOrder(saga.SagaContext):
            order_id: int

        step = noop_step(FrozenOrder)
        with pytest.raises(SagaDefinitionError, match=r"FrozenOrder is frozen.*@attrs\.define"):

            class FrozenSaga(saga.Saga[FrozenOrder]):
                steps = [step]

    def test_frozen_dataclass_context(self) -> None:
        @dataclasses.dataclass(frozen=True)
        class FrozenData(saga.SagaContext):
            order_id: int = 0

        step = noop_step(FrozenData)
        with pytest.raises(SagaDefinitionError, match="FrozenData is frozen"):

            class FrozenSaga(saga.Saga[FrozenData]):
                steps = [step]

    def test_mutable_contexts_with_validators_are_accepted(self) -> None:
        @attrs.define
        class Checked(saga.SagaContext):
            order_id: int = attrs.field(validator=attrs.validators.instance_of(int))

        @dataclasses.dataclass
        class Data(saga.SagaContext):
            order_id: int = 0

        for context in (Checked, Data):
            step = noop_step(context)

            class Fine(saga.Saga[context]):  # type: ignore[valid-type]
                steps = [step]

            assert Fine.slots


class OrderSaga(saga.Saga[OrderContext]):
    steps = [Reserve, Pay, Ship]


def mediator_for(
    storage: SagaStorage,
    journal: Journal,
    *,
    switch: Switch | None = None,
    saga_type: type = OrderSaga,
    **kwargs: Any,
) -> saga.SagaMediator:
    container = lagom.Container()
    container[Journal] = journal
    container[Switch] = switch or Switch()
    return bootstrap(
        di_container=container,
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, saga_type),
        saga_storage=storage,
        compensation_retry_delay=0.0,
        **kwargs,
    )


@pytest.mark.anyio
class TestFinishedSagaIds:
    """Re-running a finished saga id yields nothing and runs nothing, whatever its end."""

    async def test_completed_failed_and_compensation_failed(self, storage: SagaStorage) -> None:
        journal = Journal()
        mediator = mediator_for(storage, journal)
        done, failed = uuid.uuid4(), uuid.uuid4()
        assert len([r async for r in mediator.stream(OrderContext(order_id=1), saga_id=done)]) == 3
        with pytest.raises(Boom):
            async for _ in mediator.stream(OrderContext(order_id=2, fail_at="Pay"), saga_id=failed):
                pass
        broken_id = uuid.uuid4()
        broken = mediator_for(
            storage, journal, switch=Switch(broken=True), saga_type=BrokenUndoSaga
        )
        with pytest.raises(Boom):
            await broken.run(OrderContext(order_id=3, fail_at="Ship"), saga_id=broken_id)
        calls = len(journal.calls)
        ends = {}
        for saga_id in (done, failed):
            assert [
                r async for r in mediator.stream(OrderContext(order_id=4), saga_id=saga_id)
            ] == []
            ends[saga_id] = (await storage.load_saga_state(saga_id)).status
        assert await broken.run(OrderContext(order_id=4), saga_id=broken_id) == []
        assert len(journal.calls) == calls  # nothing ran again
        assert ends == {done: SagaStatus.COMPLETED, failed: SagaStatus.FAILED}
        state = await storage.load_saga_state(broken_id)
        assert state.status is SagaStatus.COMPENSATION_FAILED  # left as it was


@attrs.define
class UnrelatedContext(saga.SagaContext):
    n: int = 0


class Nothing(saga.SagaStepHandler[UnrelatedContext, None]):
    async def act(self, context: UnrelatedContext) -> None:
        return None


class UnrelatedSaga(saga.Saga[UnrelatedContext]):
    steps = [Nothing]


@pytest.mark.anyio
class TestRecoveryClaimsOnlyKnownSagas:
    """A worker recovers only sagas its SagaMap can run; others are left untouched."""

    async def test_foreign_saga_is_not_claimed_and_costs_no_attempt(
        self, storage: SagaStorage
    ) -> None:
        journal = Journal()
        owner = mediator_for(storage, journal, max_recovery_attempts=2)
        saga_id = uuid.uuid4()
        async for _ in owner.stream(OrderContext(order_id=1), saga_id=saga_id):
            break  # stop after the first step: RUNNING, resumable
        before = await storage.load_saga_state(saga_id)
        assert before.status is SagaStatus.RUNNING

        stranger = bootstrap(
            di_container=lagom.Container(),
            sagas_mapper=lambda m: m.bind(UnrelatedContext, UnrelatedSaga),
            saga_storage=storage,
            max_recovery_attempts=2,
        )
        for _ in range(4):  # more than its max_recovery_attempts
            assert await stranger.recover_pending(limit=10, stale_after=0) == 0
            assert await stranger.recover(saga_id) == 0
        after = await storage.load_saga_state(saga_id)
        assert (after.status, after.version, after.recovery_attempts) == (
            SagaStatus.RUNNING,
            before.version,
            0,
        )  # not claimed, not touched

        assert await owner.recover_pending(limit=10, stale_after=0) == 1
        assert (await storage.load_saga_state(saga_id)).status is SagaStatus.COMPLETED


class Switch:
    """Whether the undo service is down (shared by a test and its steps)."""

    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken


class UndoReserve(Reserve):
    """`Reserve` whose compensation fails while the switch says broken."""

    step_name = "Reserve"

    def __init__(self, journal: Journal, switch: Switch) -> None:
        super().__init__(journal)
        self.switch = switch

    async def compensate(self, context: OrderContext) -> None:
        await super().compensate(context)
        if self.switch.broken:
            raise RuntimeError("undo service down")


class BrokenUndoSaga(saga.Saga[OrderContext]):
    saga_name = "OrderSaga"  # the same saga, its compensation broken
    steps = [UndoReserve, Pay, Ship]


@pytest.mark.anyio
class TestCompensationFailed:
    """A compensation that used up its retries leaves a distinct state recovery finishes."""

    async def fail(self, storage: SagaStorage, **kwargs: Any) -> tuple[Any, ...]:
        journal, switch = Journal(), Switch(broken=True)
        mediator = mediator_for(
            storage,
            journal,
            switch=switch,
            saga_type=BrokenUndoSaga,
            compensation_retry_count=2,
            **kwargs,
        )
        sid = uuid.uuid4()
        with pytest.raises(Boom):
            await mediator.run(OrderContext(order_id=5, fail_at="Ship"), saga_id=sid)
        return mediator, journal, switch, sid

    async def test_distinct_state_then_recovered(self, storage: SagaStorage) -> None:
        mediator, journal, switch, sid = await self.fail(storage)
        state = await storage.load_saga_state(sid)
        assert state.status is SagaStatus.COMPENSATION_FAILED
        assert state.status.terminal
        entries = await storage.get_step_history(sid)
        assert history(entries)[-4:] == [
            "compensate:Pay:STARTED",
            "compensate:Pay:COMPLETED",
            "compensate:Reserve:STARTED",
            "compensate:Reserve:FAILED",
        ]
        assert entries[-1].details == {"attempts": 2, "error": "RuntimeError: undo service down"}

        # still broken: recovery retries, the saga stays COMPENSATION_FAILED
        assert await mediator.recover_pending(stale_after=0) == 1
        assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPENSATION_FAILED
        # the cause fixed: recovery completes the compensation
        switch.broken = False
        journal.calls.clear()
        assert await mediator.recover_pending(stale_after=0) == 1
        assert journal.names() == ["compensate:Reserve"]  # Pay is not undone twice
        state = await storage.load_saga_state(sid)
        assert (state.status, state.recovery_attempts) == (SagaStatus.FAILED, 2)
        assert history(await storage.get_step_history(sid))[-2:] == [
            "compensate:Reserve:STARTED",
            "compensate:Reserve:COMPLETED",
        ]
        assert await mediator.recover_pending(stale_after=0) == 0  # cleanly compensated

    async def test_retries_bounded_by_recovery_attempts(self, storage: SagaStorage) -> None:
        mediator, _, switch, sid = await self.fail(storage, max_recovery_attempts=2)
        assert await mediator.recover_pending(stale_after=0) == 1
        assert await mediator.recover_pending(stale_after=0) == 1
        assert await mediator.recover_pending(stale_after=0) == 0  # the limit reached
        state = await storage.load_saga_state(sid)
        assert (state.status, state.recovery_attempts) == (SagaStatus.COMPENSATION_FAILED, 2)
        # the operator fixes the cause and retries this one saga
        switch.broken = False
        assert await mediator.recover(sid) == 1
        assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED

    async def test_retry_can_be_switched_off(self, storage: SagaStorage) -> None:
        mediator, _, switch, sid = await self.fail(storage, retry_failed_compensations=False)
        switch.broken = False
        assert await mediator.recover_pending(stale_after=0) == 0
        assert (await storage.load_saga_state(sid)).status is SagaStatus.COMPENSATION_FAILED
        assert await mediator.recover(sid) == 1
        assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


@attrs.frozen
class Noted(DomainEvent):
    order_id: int


class Seen:
    def __init__(self) -> None:
        self.events: list[int] = []


class OnNoted(EventHandler[Noted]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: Noted) -> None:
        self.seen.events.append(event.order_id)


class CopyingEvents(saga.SagaStepHandler[OrderContext, None]):
    """The python-cqrs idiom: `events` returns a copy, `clear_events()` empties it."""

    step_name = "Note"

    def __init__(self) -> None:
        self._events: list[Event] = []

    @property
    def events(self) -> list[Event]:  # type: ignore[override]
        return self._events.copy()

    def clear_events(self) -> None:
        self._events.clear()

    async def act(self, context: OrderContext) -> None:
        self._events.append(Noted(order_id=context.order_id))
        if context.fail_at == "Note":
            raise Boom("Note")

    async def compensate(self, context: OrderContext) -> None:
        return None


class Emitting(saga.SagaStepHandler[OrderContext, None]):
    """The standard `emit`, failing after it emitted when told to."""

    step_name = "Note"

    async def act(self, context: OrderContext) -> None:
        self.emit(Noted(order_id=context.order_id))
        if context.fail_at == "Note":
            raise Boom("Note")


class Stalling(saga.SagaStepHandler[OrderContext, None]):
    """Emits, then (when told to) waits until cancelled."""

    step_name = "Note"

    def __init__(self) -> None:
        self.entered = anyio.Event()

    async def act(self, context: OrderContext) -> None:
        self.emit(Noted(order_id=context.order_id))
        if context.fail_at == "Note":
            self.entered.set()
            await anyio.sleep_forever()


class PrimaryFails(saga.SagaStepHandler[OrderContext, None]):
    async def act(self, context: OrderContext) -> None:
        raise Boom("primary")


class LastFails(saga.SagaStepHandler[OrderContext, None]):
    async def act(self, context: OrderContext) -> None:
        if context.fail_at == "Last":
            raise Boom("Last")


@pytest.mark.anyio
class TestStepEventsOnce:
    """Each event a step emits is dispatched once: copying `events`, singletons, failures."""

    def mediator(
        self, step: type, *, singleton: bool, instance: Any = None, fallback: bool = False
    ) -> tuple[saga.SagaMediator, Seen]:
        seen = Seen()
        container = lagom.Container()
        container[Seen] = seen
        if singleton:
            container[step] = instance or step()

        class NoteSaga(saga.Saga[OrderContext]):
            steps = [
                saga.Fallback(step=PrimaryFails, fallback=step) if fallback else step,
                LastFails,
            ]

        events = EventMap()
        events.bind(Noted, OnNoted)
        mediator = bootstrap(
            di_container=container,
            sagas_mapper=lambda sagas: sagas.bind(OrderContext, NoteSaga),
            domain_events_mapper=events,
            compensation_retry_delay=0.0,
        )
        return mediator, seen

    @pytest.mark.parametrize("singleton", [False, True])
    async def test_copying_events_idiom(self, singleton: bool) -> None:
        mediator, seen = self.mediator(CopyingEvents, singleton=singleton)
        await mediator.run(OrderContext(order_id=1))
        await mediator.run(OrderContext(order_id=2))
        with pytest.raises(Boom):  # compensated: act's events not dispatched again
            await mediator.run(OrderContext(order_id=3, fail_at="Last"))
        assert seen.events == [1, 2, 3]

    @pytest.mark.parametrize("fallback", [False, True])
    @pytest.mark.parametrize("step", [CopyingEvents, Emitting])
    async def test_singleton_drops_a_failed_acts_events(self, step: type, fallback: bool) -> None:
        mediator, seen = self.mediator(step, singleton=True, fallback=fallback)
        with pytest.raises(Boom):
            await mediator.run(OrderContext(order_id=1, fail_at="Note"))
        await mediator.run(OrderContext(order_id=2))
        assert seen.events == [2]

    async def test_singleton_drops_a_cancelled_acts_events(self) -> None:
        step = Stalling()
        mediator, seen = self.mediator(Stalling, singleton=True, instance=step)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(mediator.run, OrderContext(order_id=1, fail_at="Note"))
                await step.entered.wait()
                tg.cancel_scope.cancel()  # cancelled during act: left RUNNING
        await mediator.run(OrderContext(order_id=2))
        assert seen.events == [2]

    async def test_standard_singleton(self) -> None:
        mediator, seen = self.mediator(Emitting, singleton=True)
        for n in range(3):
            await mediator.run(OrderContext(order_id=n))
        assert seen.events == [0, 1, 2]
