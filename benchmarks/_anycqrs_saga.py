"""anycqrs saga workloads: 3 steps, success and failure (step 3 fails, steps
2 and 1 compensate), on memory, SQLite and PostgreSQL storage.

Imported lazily: a storage that is not there yet (or PostgreSQL not reachable)
makes its workloads ``n/a``.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs

from anycqrs.saga import Saga, SagaContext, SagaMap, SagaStepHandler
from anycqrs.saga import bootstrap as saga_bootstrap

from ._harness import Op, Unavailable

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


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


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@asynccontextmanager
async def _storage(kind: str) -> AsyncIterator[Any]:
    from anycqrs.saga import storage

    if kind == "memory":
        yield storage.MemorySagaStorage()
        return
    if kind == "sqlite":
        cls = getattr(storage, "SqliteSagaStorage", None)
        if cls is None:
            raise Unavailable("SqliteSagaStorage not implemented yet")
        with tempfile.TemporaryDirectory(prefix="anycqrs-bench-") as tmp:
            yield cls(os.path.join(tmp, "sagas.db"))
        return
    cls = getattr(storage, "PostgresSagaStorage", None)
    if cls is None:
        raise Unavailable("PostgresSagaStorage not implemented yet")
    if not postgres_reachable():
        raise Unavailable("PostgreSQL not reachable on 127.0.0.1:5432")
    suffix = uuid.uuid4().hex[:8]
    try:
        store = cls(POSTGRES_DSN, **_table_names(cls, suffix))
    except TypeError:
        store = cls(POSTGRES_DSN)
    try:
        yield store
    finally:
        close = getattr(store, "aclose", None) or getattr(store, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result


def _table_names(cls: type, suffix: str) -> dict[str, str]:
    """Unique table names when the storage takes them (parallel runs don't collide)."""
    import inspect

    params = inspect.signature(cls).parameters
    return {
        name: f"bench_{name.removesuffix('_table')}_{suffix}"
        for name in params
        if name.endswith("_table")
    }


def saga(kind: str, *, fail: bool) -> Any:
    """``SagaMediator.stream`` of a 3-step saga to its end (or its failure)."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async with _storage(kind) as store:

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
