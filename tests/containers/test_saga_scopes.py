"""Saga steps in scopes: one per `act`, one per compensation attempt (on a
step instance built in it), in every container."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import attrs
import pytest

import anycqrs.saga as saga
from anycqrs.saga.bootstrap import bootstrap

from .conftest import OUTCOME_AWARE, Journal, Repo, Session, build

pytestmark = pytest.mark.anyio


@attrs.define
class Order(saga.SagaContext):
    fail: bool = False
    sessions: list[int] = attrs.Factory(list)


class Reserve(saga.SagaStepHandler[Order, None]):
    def __init__(self, repo: Repo, session: Session) -> None:
        self.repo = repo
        self.session = session

    async def act(self, context: Order) -> None:
        assert self.repo.session is self.session
        context.sessions.append(self.session.number)

    async def compensate(self, context: Order) -> None:
        assert self.repo.session is self.session
        context.sessions.append(-self.session.number)


class Pay(saga.SagaStepHandler[Order, None]):
    def __init__(self, repo: Repo, session: Session) -> None:
        self.session = session

    async def act(self, context: Order) -> None:
        context.sessions.append(self.session.number)
        if context.fail:
            raise ValueError("card declined")

    async def compensate(self, context: Order) -> None:
        raise AssertionError("a step that failed is not compensated")


class OrderSaga(saga.Saga[Order]):
    steps = [Reserve, Pay]


def mediator(kind: str, journal: Journal) -> saga.SagaMediator:
    return bootstrap(
        di_container=build(kind, [Reserve, Pay], journal),
        sagas_mapper=lambda sagas: sagas.bind(Order, OrderSaga),
    )


def ended(kind: str, number: int, error: str | None = None) -> tuple[Any, ...]:
    if kind not in OUTCOME_AWARE:
        return ("close", number)
    return ("commit", number) if error is None else ("rollback", number, error)


class TestSagaScopes:
    """Each step a unit of work; compensation in units of work of its own."""

    async def test_a_scope_per_step(self, kind: str, journal: Journal) -> None:
        context = Order()
        with anyio.fail_after(10):
            async for _ in mediator(kind, journal).stream(context):
                pass
        assert context.sessions == [1, 2]
        assert journal.finals() == [ended(kind, 1), ended(kind, 2)]

    async def test_compensation_runs_in_a_fresh_scope(self, kind: str, journal: Journal) -> None:
        context = Order(fail=True)
        with anyio.fail_after(10), pytest.raises(ValueError, match="card declined"):
            async for _ in mediator(kind, journal).stream(context):
                pass
        # Pay's scope rolled back before Reserve was compensated, in scope 3
        assert journal.finals() == [
            ended(kind, 1),
            ended(kind, 2, "ValueError"),
            ended(kind, 3),
        ]
        assert context.sessions[-1] == -3


@attrs.define
class Stuck(saga.SagaContext):
    pass


STARTED: list[anyio.Event] = []


class Wait(saga.SagaStepHandler[Stuck, None]):
    def __init__(self, repo: Repo, session: Session) -> None:
        self.session = session

    async def act(self, context: Stuck) -> None:
        STARTED[-1].set()
        await anyio.sleep_forever()

    async def compensate(self, context: Stuck) -> None:
        raise AssertionError("a cancelled step is not compensated")


class StuckSaga(saga.Saga[Stuck]):
    steps = [Wait]


async def test_a_cancelled_step_rolls_back_and_stays_running(kind: str, journal: Journal) -> None:
    mediator = bootstrap(
        di_container=build(kind, [Wait], journal),
        sagas_mapper=lambda sagas: sagas.bind(Stuck, StuckSaga),
    )
    STARTED.append(anyio.Event())
    saga_id = uuid.uuid4()

    async def run() -> None:
        async for _ in mediator.stream(Stuck(), saga_id=saga_id):
            raise AssertionError("the step never finishes")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await STARTED[-1].wait()
            group.cancel_scope.cancel()
        state = await mediator.storage.load_saga_state(saga_id)
    cancelled = anyio.get_cancelled_exc_class().__name__
    assert journal.finals() == [ended(kind, 1, cancelled)]
    assert state.status is saga.SagaStatus.RUNNING  # resumable, not compensated


@attrs.define
class Gated(saga.SagaContext):
    sessions: list[int] = attrs.Factory(list)


GATE: list[str] = []


class Book(saga.SagaStepHandler[Gated, None]):
    def __init__(self, repo: Repo, session: Session) -> None:
        self.session = session

    async def act(self, context: Gated) -> None:
        context.sessions.append(self.session.number)

    async def compensate(self, context: Gated) -> None:
        context.sessions.append(-self.session.number)


class Gate(saga.SagaStepHandler[Gated, None]):
    def __init__(self, repo: Repo, session: Session) -> None:
        self.session = session

    async def act(self, context: Gated) -> None:
        if GATE[-1] == "block":
            STARTED[-1].set()
            await anyio.sleep_forever()
        raise ValueError("gate closed")


class GatedSaga(saga.Saga[Gated]):
    steps = [Book, Gate]


async def test_recovery_compensates_in_fresh_scopes(kind: str, journal: Journal) -> None:
    mediator = bootstrap(
        di_container=build(kind, [Book, Gate], journal),
        sagas_mapper=lambda sagas: sagas.bind(Gated, GatedSaga),
    )
    STARTED.append(anyio.Event())
    GATE.append("block")
    saga_id = uuid.uuid4()

    async def run() -> None:
        async for _ in mediator.stream(Gated(), saga_id=saga_id):
            pass

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await STARTED[-1].wait()
            group.cancel_scope.cancel()
        GATE.append("fail")
        await mediator.recover(saga_id)
        state = await mediator.storage.load_saga_state(saga_id)
    cancelled = anyio.get_cancelled_exc_class().__name__
    assert state.status is saga.SagaStatus.FAILED
    # Book acted (1), Gate cancelled (2); recovery: Book rebuilt (3), Gate failed (4),
    # Book compensated on a fresh instance in a fresh scope (5)
    assert journal.finals() == [
        ended(kind, 1),
        ended(kind, 2, cancelled),
        ended(kind, 3),
        ended(kind, 4, "ValueError"),
        ended(kind, 5),
    ]
