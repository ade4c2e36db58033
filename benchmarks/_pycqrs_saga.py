"""python-cqrs 5.3 saga workloads: the same 3-step saga on its memory storage.

python-cqrs's SQL storage needs SQLAlchemy with async drivers, which the bench
environment does not install, so its SQLite/PostgreSQL columns are ``n/a``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import cqrs
import di
from cqrs.bootstrap import saga as saga_bootstrap
from cqrs.saga.models import SagaContext
from cqrs.saga.saga import Saga
from cqrs.saga.storage.memory import MemorySagaStorage

from ._harness import Op

logging.getLogger("cqrs").setLevel(logging.WARNING)


class StepFailed(Exception):
    pass


@dataclasses.dataclass
class OrderContext(SagaContext):
    order_id: int
    reserved: bool = False
    paid: bool = False
    shipped: bool = False


@dataclasses.dataclass
class FailingOrderContext(SagaContext):
    order_id: int
    reserved: bool = False
    paid: bool = False
    shipped: bool = False


def _step(name: str, ctx: type, attr: str, *, fail: bool = False) -> type:
    async def act(self: Any, context: Any) -> Any:
        if fail:
            raise StepFailed("carrier down")
        setattr(context, attr, True)
        return self._generate_step_result(None)

    async def compensate(self: Any, context: Any) -> None:
        setattr(context, attr, False)

    import types

    return types.new_class(
        name,
        (cqrs.SagaStepHandler[ctx, None],),
        exec_body=lambda ns: ns.update(act=act, compensate=compensate),
    )


Reserve = _step("Reserve", OrderContext, "reserved")
Pay = _step("Pay", OrderContext, "paid")
Ship = _step("Ship", OrderContext, "shipped")
FReserve = _step("FReserve", FailingOrderContext, "reserved")
FPay = _step("FPay", FailingOrderContext, "paid")
FShip = _step("FShip", FailingOrderContext, "shipped", fail=True)


class OrderSaga(Saga[OrderContext]):
    steps = [Reserve, Pay, Ship]


class FailingOrderSaga(Saga[FailingOrderContext]):
    steps = [FReserve, FPay, FShip]


def saga(*, fail: bool) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def sagas(mapper: Any) -> None:
            mapper.bind(OrderContext, OrderSaga)
            mapper.bind(FailingOrderContext, FailingOrderSaga)

        mediator = saga_bootstrap.bootstrap(
            di_container=di.Container(),
            sagas_mapper=sagas,
            saga_storage=MemorySagaStorage(),
        )
        if fail:

            async def op() -> None:
                try:
                    async for _result in mediator.execute(FailingOrderContext(order_id=1)):
                        pass
                except StepFailed:
                    return
                raise AssertionError("the saga should have failed")

        else:

            async def op() -> None:
                steps = 0
                async for _result in mediator.execute(OrderContext(order_id=1)):
                    steps += 1
                assert steps == 3

        yield op

    return setup
