"""Sagas and helpers shared by the saga tests (the one module to import them from)."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import attrs
import lagom

import anycqrs.saga as saga
from anycqrs.messages import DomainEvent
from anycqrs.saga._run import Run
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import SagaStorage
from anycqrs.serialization import to_dict


@attrs.define
class OrderContext(saga.SagaContext):
    order_id: int
    items: list[str] = attrs.Factory(list)
    reserved: bool = False
    paid: int = 0
    shipped_by: str | None = None
    fail_at: str | None = None


@attrs.frozen
class Reserved(DomainEvent):
    order_id: int


class Journal:
    """What the steps did, in order, with the handler instance ids."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def add(self, what: str, step: Any) -> None:
        self.calls.append((what, step.step_name, id(step)))

    def names(self) -> list[str]:
        return [f"{what}:{name}" for what, name, _ in self.calls]


class Boom(Exception):
    pass


class Step(saga.SagaStepHandler[OrderContext, Any]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def act(self, context: OrderContext) -> Any:
        self.journal.add("act", self)
        if context.fail_at == self.step_name:
            raise Boom(self.step_name)
        return await self.work(context)

    async def work(self, context: OrderContext) -> Any:
        return None

    async def compensate(self, context: OrderContext) -> None:
        self.journal.add("compensate", self)


class Reserve(Step):
    async def work(self, context: OrderContext) -> Any:
        context.reserved = True
        context.items.append("book")
        self.emit(Reserved(order_id=context.order_id))
        return "reserved"


class Pay(Step):
    async def work(self, context: OrderContext) -> Any:
        context.paid += 10
        return context.paid


class Ship(Step):
    async def work(self, context: OrderContext) -> Any:
        context.shipped_by = "fast"
        return "shipped"


class ShipSlow(Step):
    async def work(self, context: OrderContext) -> Any:
        context.shipped_by = "slow"
        return "slow"


class OrderSaga(saga.Saga[OrderContext]):
    steps = [Reserve, Pay, Ship]


class FallbackSaga(saga.Saga[OrderContext]):
    saga_name = "FallbackOrderSaga"
    steps = [Reserve, saga.Fallback(step=Ship, fallback=ShipSlow)]


def container_of(journal: Journal) -> lagom.Container:
    """A container that gives steps `journal`."""
    container = lagom.Container()
    container[Journal] = journal
    return container


def make_mediator(
    journal: Journal,
    storage: SagaStorage | None = None,
    saga_type: type = OrderSaga,
    **kwargs: Any,
) -> saga.SagaMediator:
    return bootstrap(
        di_container=container_of(journal),
        sagas_mapper=lambda sagas: sagas.bind(OrderContext, saga_type),
        saga_storage=storage,
        compensation_retry_delay=0,
        **kwargs,
    )


def history(entries: list[saga.SagaStepEntry]) -> list[str]:
    return [f"{e.action.value}:{e.step_name}:{e.status.value}" for e in entries]


class Gate:
    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()


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


class FakeSleep:
    """Records the retry delays instead of sleeping (no real waits in tests)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def stored_run(storage: SagaStorage, context: OrderContext) -> Run:
    """A run of `OrderSaga` over `context`, created in `storage`."""
    snapshot = to_dict(context)
    saga_id = uuid.uuid4()
    version = await storage.create_saga(
        saga_id, OrderSaga.saga_name, snapshot, status=saga.SagaStatus.RUNNING
    )
    return Run(saga_id, OrderSaga, context, version, snapshot)


def drop_tables(dsn: str, *tables: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def sqlalchemy_engine(kind: str, request: Any, tmp_path: Any) -> Any:
    """A sync SQLAlchemy engine for a ``sqlalchemy-<database>`` storage kind
    (``None`` for the other kinds)."""
    if not kind.startswith("sqlalchemy-"):
        return None
    import sqlalchemy

    database = kind.removeprefix("sqlalchemy-")
    if database == "sqlite":
        return sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'sagas-sa.db'}")
    if database == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        return sqlalchemy.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    return sqlalchemy.create_engine(request.getfixturevalue("mariadb_url"))


def drop_sqlalchemy_tables(engine: Any, *tables: str) -> None:
    import sqlalchemy

    with engine.begin() as connection:
        for table in tables:
            connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
