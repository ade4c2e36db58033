"""An order saga on SQLite: reserve stock, charge (with a fallback), ship.

Three orders run: one completes, one fails at shipping and is compensated,
one is interrupted after its first step and finished by recovery. The step
log of each saga is printed.

Run: ``python examples/saga_order.py [--backend trio] [--database sagas.db]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import anyio
import attrs
import lagom

from anycqrs import DomainEvent, EventHandler, EventMap
from anycqrs.diagrams import SagaMermaid
from anycqrs.saga import Fallback, Saga, SagaContext, SagaMap, SagaStepHandler
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import SqliteSagaStorage


@attrs.define
class OrderContext(SagaContext):
    order_id: int
    items: list[str]
    amount: int
    reservation: str | None = None
    payment: str | None = None
    tracking: str | None = None


@attrs.frozen
class OrderShipped(DomainEvent):
    order_id: int
    tracking: str


class Warehouse:
    """A stand-in for a stock service; idempotent by key."""

    def __init__(self) -> None:
        self.reserved: dict[str, list[str]] = {}

    def reserve(self, key: str, items: list[str]) -> str:
        self.reserved.setdefault(key, list(items))
        return f"R-{key[:8]}"

    def release(self, key: str) -> None:
        self.reserved.pop(key, None)


class CardDeclined(Exception):
    pass


class OutOfCouriers(Exception):
    pass


class ReserveStock(SagaStepHandler[OrderContext, str]):
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    async def act(self, context: OrderContext) -> str:
        context.reservation = self.warehouse.reserve(self.idempotency_key, context.items)
        return context.reservation

    async def compensate(self, context: OrderContext) -> None:
        self.warehouse.release(self.idempotency_key)
        context.reservation = None


class ChargeCard(SagaStepHandler[OrderContext, str]):
    async def act(self, context: OrderContext) -> str:
        if context.amount > 10_000:
            raise CardDeclined(f"card limit exceeded for {context.amount}")
        context.payment = f"card:{context.amount}"
        return context.payment

    async def compensate(self, context: OrderContext) -> None:
        context.payment = None  # refund


class SendInvoice(SagaStepHandler[OrderContext, str]):
    async def act(self, context: OrderContext) -> str:
        context.payment = f"invoice:{context.amount}"
        return context.payment

    async def compensate(self, context: OrderContext) -> None:
        context.payment = None  # cancel the invoice


class ShipOrder(SagaStepHandler[OrderContext, str]):
    async def act(self, context: OrderContext) -> str:
        if "piano" in context.items:
            raise OutOfCouriers("no courier takes a piano today")
        context.tracking = f"TRACK-{context.order_id}"
        self.emit(OrderShipped(order_id=context.order_id, tracking=context.tracking))
        return context.tracking


class OrderSaga(Saga[OrderContext]):
    steps = [  # noqa: RUF012 - read once, at class definition
        ReserveStock,
        Fallback(step=ChargeCard, fallback=SendInvoice, failure_exceptions=(CardDeclined,)),
        ShipOrder,
    ]


class AnnounceShipping(EventHandler[OrderShipped]):
    async def handle(self, event: OrderShipped) -> None:
        print(f"  event: order {event.order_id} shipped ({event.tracking})")


async def show(mediator: Any, saga_id: Any) -> None:
    state = await mediator.storage.load_saga_state(saga_id)
    print(f"  saga {saga_id}: {state.status.value} (version {state.version})")
    for entry in await mediator.storage.get_step_history(saga_id):
        print(f"    {entry.action.value:<10} {entry.step_name:<12} {entry.status.value}")


async def main(database: Path) -> None:
    container = lagom.Container()
    container[Warehouse] = Warehouse()
    storage = SqliteSagaStorage(database)

    def sagas(saga_map: SagaMap) -> None:
        saga_map.bind(OrderContext, OrderSaga)

    def events(event_map: EventMap) -> None:
        event_map.bind(OrderShipped, AnnounceShipping)

    mediator = bootstrap(
        di_container=container,
        sagas_mapper=sagas,
        domain_events_mapper=events,
        saga_storage=storage,
        compensation_retry_delay=0.01,
    )

    print("order 1: books, paid by invoice (the card is declined)")
    async for result in mediator.stream(OrderContext(1, ["book", "pen"], 12_000)):
        print(f"  {result.step_type.__name__} -> {result.response}")
        saga_id = result.saga_id
    await show(mediator, saga_id)

    print("order 2: a piano (shipping fails, the saga compensates)")
    context = OrderContext(2, ["piano"], 900)
    try:
        async for result in mediator.stream(context):
            print(f"  {result.step_type.__name__} -> {result.response}")
            saga_id = result.saga_id
    except OutOfCouriers as error:
        print(f"  failed: {error}; reservation={context.reservation} payment={context.payment}")
    await show(mediator, saga_id)

    print("order 3: interrupted after its first step, then recovered")
    async for result in mediator.stream(OrderContext(3, ["lamp"], 50)):
        saga_id = result.saga_id
        break  # the consumer stops: the saga stays RUNNING
    print(f"  status after the break: {(await storage.load_saga_state(saga_id)).status.value}")
    print(f"  recovered: {await mediator.recover_pending(limit=10, stale_after=0)}")
    await show(mediator, saga_id)

    print("diagram:")
    print(SagaMermaid(OrderSaga).class_diagram())
    storage.close()
    print("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--database", type=Path, default=None)
    args = parser.parse_args()
    if args.database is None:
        with tempfile.TemporaryDirectory() as folder:
            anyio.run(main, Path(folder) / "sagas.db", backend=args.backend)
    else:
        anyio.run(main, args.database, backend=args.backend)
