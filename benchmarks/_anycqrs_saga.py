"""anycqrs saga workloads: 3 steps, success and failure (step 3 fails, steps
2 and 1 compensate), on memory, SQLite and PostgreSQL storage.

Imported lazily: PostgreSQL not reachable makes its workloads ``n/a``. The
PostgreSQL workloads write to uniquely named ``bench_*`` tables of the
configured database (see `benchmarks._services`) and drop them when they end.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs

from anycqrs.saga import Saga, SagaContext, SagaMap, SagaStepHandler
from anycqrs.saga import bootstrap as saga_bootstrap

from ._harness import Op
from ._services import DEFAULT_POSTGRES_DSN


class StepFailed(Exception):
    """The deliberate failure of the last step."""


@attrs.define
class OrderContext(SagaContext):
    order_id: int
    reserved: bool = False
    paid: bool = False
    shipped: bool = False


@attrs.define
class FailingOrderContext(SagaContext):
    order_id: int
    reserved: bool = False
    paid: bool = False
    shipped: bool = False


class Reserve(SagaStepHandler[OrderContext, None]):
    async def act(self, context: OrderContext) -> None:
        context.reserved = True

    async def compensate(self, context: OrderContext) -> None:
        context.reserved = False


class Pay(SagaStepHandler[OrderContext, None]):
    async def act(self, context: OrderContext) -> None:
        context.paid = True

    async def compensate(self, context: OrderContext) -> None:
        context.paid = False


class Ship(SagaStepHandler[OrderContext, None]):
    async def act(self, context: OrderContext) -> None:
        context.shipped = True

    async def compensate(self, context: OrderContext) -> None:
        context.shipped = False


class FReserve(SagaStepHandler[FailingOrderContext, None]):
    async def act(self, context: FailingOrderContext) -> None:
        context.reserved = True

    async def compensate(self, context: FailingOrderContext) -> None:
        context.reserved = False


class FPay(SagaStepHandler[FailingOrderContext, None]):
    async def act(self, context: FailingOrderContext) -> None:
        context.paid = True

    async def compensate(self, context: FailingOrderContext) -> None:
        context.paid = False


class FShip(SagaStepHandler[FailingOrderContext, None]):
    async def act(self, context: FailingOrderContext) -> None:
        raise StepFailed("carrier down")

    async def compensate(self, context: FailingOrderContext) -> None:
        context.shipped = False


class OrderSaga(Saga[OrderContext]):
    steps = [Reserve, Pay, Ship]


class FailingOrderSaga(Saga[FailingOrderContext]):
    steps = [FReserve, FPay, FShip]


@asynccontextmanager
async def _storage(kind: str, dsn: str) -> AsyncIterator[Any]:
    from anycqrs.saga import storage

    if kind == "memory":
        yield storage.MemorySagaStorage()
        return
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="anycqrs-bench-") as tmp:
            sqlite = storage.SqliteSagaStorage(os.path.join(tmp, "sagas.db"))
            try:
                yield sqlite
            finally:
                sqlite.close()
        return
    suffix = uuid.uuid4().hex[:8]  # parallel runs don't collide
    tables = {"sagas_table": f"bench_sagas_{suffix}", "log_table": f"bench_saga_log_{suffix}"}
    store = storage.PostgresSagaStorage(dsn, **tables)
    try:
        yield store
    finally:
        store.close()
        _drop(dsn, tables.values())


def _drop(dsn: str, tables: Any) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        for table in tables:
            connection.execute(f'DROP TABLE IF EXISTS "{table}"'.encode())


def saga(kind: str, *, fail: bool, dsn: str = DEFAULT_POSTGRES_DSN) -> Any:
    """``SagaMediator.stream`` of a 3-step saga to its end (or its failure);
    ``dsn`` is the database of the ``postgres`` kind."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with _storage(kind, dsn) as store:

            def sagas(mapper: SagaMap) -> None:
                mapper.bind(OrderContext, OrderSaga)
                mapper.bind(FailingOrderContext, FailingOrderSaga)

            # python-cqrs's saga dispatcher keeps its middleware chain but never
            # runs it: like for like, no middleware here either.
            mediator = saga_bootstrap.bootstrap(sagas_mapper=sagas, saga_storage=store)
            if fail:

                async def op() -> None:
                    try:
                        async for _result in mediator.stream(FailingOrderContext(order_id=1)):
                            pass
                    except StepFailed:
                        return
                    raise AssertionError("the saga should have failed")

            else:

                async def op() -> None:
                    steps = 0
                    async for _result in mediator.stream(OrderContext(order_id=1)):
                        steps += 1
                    assert steps == 3

            yield op

    return setup
