"""An order service on anycqrs's embedded defaults: SQLite and the in-memory broker.

Run it with ``nox -s demo`` or ``python examples/order_service.py --backend trio``.

The flow, all in one process here (in production the halves talk over Kafka or RabbitMQ):

1. ``PlaceOrder`` (a command, through a ``RequestMediator`` with one middleware) writes the
   order row and its ``OrderAccepted`` notification into SQLite in **one transaction**
   (the transactional outbox), and emits a domain event handled in-process.
2. An ``OutboxRelay`` publishes the pending notifications to the in-memory broker.
3. The fulfilment side consumes them through an ``EventMediator``; its handler runs a
   **saga** (reserve stock, charge payment, ship) whose log lives in SQLite. An order
   the bank declines is compensated (stock released) and cancelled.
4. ``GetOrder`` (a query) shows the final state of each order.

The same code runs under asyncio and trio.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import anyio
import attrs
import lagom

import anycqrs
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.events.bootstrap import bootstrap as bootstrap_events
from anycqrs.outbox import OutboxRelay, SqliteOutbox, SqliteOutboxStore
from anycqrs.requests.bootstrap import bootstrap as bootstrap_requests
from anycqrs.saga.bootstrap import bootstrap as bootstrap_sagas
from anycqrs.saga.storage import SqliteSagaStorage

# --- messages ---------------------------------------------------------------------------


@attrs.frozen
class OrderLine:
    sku: str
    quantity: int
    unit_price_cents: int


@attrs.frozen
class OrderPlaced(anycqrs.Response):
    order_id: UUID
    total_cents: int


@attrs.frozen
class PlaceOrder(anycqrs.Request[OrderPlaced]):
    customer: str
    lines: list[OrderLine]


@attrs.frozen
class OrderView(anycqrs.Response):
    order_id: UUID
    customer: str
    total_cents: int
    status: str


@attrs.frozen
class GetOrder(anycqrs.Request[OrderView]):
    order_id: UUID


@attrs.frozen
class OrderRecorded(anycqrs.DomainEvent):
    order_id: UUID
    customer: str


@attrs.frozen
class OrderAccepted:
    """Payload of the integration event the fulfilment side consumes."""

    order_id: UUID
    customer: str
    skus: list[str]
    total_cents: int


@attrs.define
class Fulfilment(anycqrs.SagaContext):
    order_id: UUID
    skus: list[str]
    total_cents: int
    reservation: str | None = None
    payment: str | None = None
    tracking: str | None = None


# --- infrastructure ------------------------------------------------------------------------


class Console:
    """Where the demo prints (tests read it)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def say(self, text: str) -> None:
        print(f"[{self.backend}] {text}", flush=True)


class Shop:
    """The shop's SQLite database: orders and, in the same file, the outbox."""

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, check_same_thread=False)
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer TEXT,"
            " total_cents INTEGER, status TEXT)"
        )
        self.connection.commit()
        self.outbox = SqliteOutbox(self.connection)
        self.lock = anyio.Lock()  # one connection: one statement at a time

    async def place(self, order_id: UUID, customer: str, total: int, event: Any) -> None:
        def transaction() -> None:
            self.connection.execute(
                "INSERT INTO orders VALUES (?, ?, ?, 'placed')", (str(order_id), customer, total)
            )
            self.outbox.add(event)  # same transaction: both rows commit, or neither

        async with self.lock:
            await self.outbox.run_in_transaction(transaction)

    async def set_status(self, order_id: UUID, status: str) -> None:
        def update() -> None:
            with self.connection:
                self.connection.execute(
                    "UPDATE orders SET status = ? WHERE id = ?", (status, str(order_id))
                )

        async with self.lock:
            await anyio.to_thread.run_sync(update)

    async def get(self, order_id: UUID) -> OrderView:
        def select() -> tuple[Any, ...]:
            return self.connection.execute(  # type: ignore[no-any-return]
                "SELECT customer, total_cents, status FROM orders WHERE id = ?", (str(order_id),)
            ).fetchone()

        async with self.lock:
            customer, total, status = await anyio.to_thread.run_sync(select)
        return OrderView(order_id, customer, total, status)


class Warehouse:
    def __init__(self) -> None:
        self.reserved: dict[str, list[str]] = {}


class PaymentDeclined(Exception):
    pass


# --- the ordering side: command, query, domain event -------------------------------------


class PlaceOrderHandler(anycqrs.RequestHandler[PlaceOrder, OrderPlaced]):
    def __init__(self, shop: Shop, console: Console) -> None:
        self.shop = shop
        self.console = console

    async def handle(self, request: PlaceOrder) -> OrderPlaced:
        order_id = uuid4()
        total = sum(line.quantity * line.unit_price_cents for line in request.lines)
        accepted = anycqrs.NotificationEvent(
            payload=OrderAccepted(
                order_id, request.customer, [x.sku for x in request.lines], total
            ),
            topic="orders",
            key=str(order_id),
        )
        await self.shop.place(order_id, request.customer, total, accepted)
        self.console.say(f"order {str(order_id)[:8]} placed for {request.customer}: {total} cents")
        self.emit(OrderRecorded(order_id, request.customer))
        return OrderPlaced(order_id, total)


class GetOrderHandler(anycqrs.RequestHandler[GetOrder, OrderView]):
    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    async def handle(self, request: GetOrder) -> OrderView:
        return await self.shop.get(request.order_id)


class ThankCustomer(anycqrs.EventHandler[OrderRecorded]):
    def __init__(self, console: Console) -> None:
        self.console = console

    async def handle(self, event: OrderRecorded) -> None:
        self.console.say(f"thank-you note queued for {event.customer}")


class Timing:
    """A middleware: how long each command or query took."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def __call__(self, message: Any, call_next: anycqrs.middlewares.CallNext) -> Any:
        started = anyio.current_time()
        result = await call_next(message)
        elapsed = (anyio.current_time() - started) * 1000
        self.console.say(f"{type(message).__name__} handled in {elapsed:.2f} ms")
        return result


# --- the fulfilment side: a saga started from a consumed event ----------------------------


class ReserveStock(anycqrs.SagaStepHandler[Fulfilment, str]):
    def __init__(self, warehouse: Warehouse, console: Console) -> None:
        self.warehouse = warehouse
        self.console = console

    async def act(self, context: Fulfilment) -> str:
        self.warehouse.reserved[str(context.order_id)] = list(context.skus)
        context.reservation = f"R-{str(context.order_id)[:8]}"
        return context.reservation

    async def compensate(self, context: Fulfilment) -> None:
        self.warehouse.reserved.pop(str(context.order_id), None)
        self.console.say(f"  compensated: stock released for {str(context.order_id)[:8]}")
        context.reservation = None


class ChargePayment(anycqrs.SagaStepHandler[Fulfilment, str]):
    async def act(self, context: Fulfilment) -> str:
        if context.total_cents > 50_000:
            raise PaymentDeclined(f"bank declined {context.total_cents} cents")
        context.payment = f"P-{context.total_cents}"
        return context.payment

    async def compensate(self, context: Fulfilment) -> None:
        context.payment = None


class Ship(anycqrs.SagaStepHandler[Fulfilment, str]):
    async def act(self, context: Fulfilment) -> str:
        context.tracking = f"TRACK-{str(context.order_id)[:8]}"
        return context.tracking

    async def compensate(self, context: Fulfilment) -> None:
        context.tracking = None


class FulfilmentSaga(anycqrs.Saga[Fulfilment]):
    steps = [ReserveStock, ChargePayment, Ship]  # noqa: RUF012


class Fulfil(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderAccepted]]):
    def __init__(self, sagas: anycqrs.SagaMediator, shop: Shop, console: Console) -> None:
        self.sagas = sagas
        self.shop = shop
        self.console = console

    async def handle(self, event: anycqrs.NotificationEvent[OrderAccepted]) -> None:
        order = event.payload
        context = Fulfilment(order.order_id, order.skus, order.total_cents)
        try:
            async for step in self.sagas.stream(context):
                self.console.say(f"  saga step {step.step_type.__name__}: {step.response}")
        except PaymentDeclined as exc:
            self.console.say(f"  saga failed: {exc}")
            await self.shop.set_status(order.order_id, "cancelled")
        else:
            await self.shop.set_status(order.order_id, "shipped")


# --- wiring -----------------------------------------------------------------------------------


async def run_demo(backend: str, database: str) -> None:
    console = Console(backend)
    shop = Shop(database)
    container = lagom.Container()
    container[Shop] = shop
    container[Console] = console
    container[Warehouse] = Warehouse()
    broker = InMemoryMessageBroker()

    def commands(requests: anycqrs.RequestMap) -> None:
        requests.bind(PlaceOrder, PlaceOrderHandler)

    def queries(requests: anycqrs.RequestMap) -> None:
        requests.bind(GetOrder, GetOrderHandler)

    ordering = bootstrap_requests(
        di_container=container,
        message_broker=broker,
        middlewares=[Timing(console)],
        commands_mapper=commands,
        queries_mapper=queries,
        domain_events_mapper=lambda events: events.bind(OrderRecorded, ThankCustomer),
    )
    sagas = bootstrap_sagas(
        di_container=container,
        sagas_mapper=lambda saga_map: saga_map.bind(Fulfilment, FulfilmentSaga),
        saga_storage=SqliteSagaStorage(database),
        compensation_retry_delay=0.01,
    )
    container[anycqrs.SagaMediator] = sagas
    fulfilment = bootstrap_events(
        di_container=container,
        events_mapper=lambda events: events.bind(anycqrs.NotificationEvent[OrderAccepted], Fulfil),
    )

    ada = await ordering.send(
        PlaceOrder("ada", [OrderLine("book", 2, 1500), OrderLine("pen", 3, 200)])
    )
    grace = await ordering.send(PlaceOrder("grace", [OrderLine("laptop", 1, 99000)]))

    with SqliteOutboxStore(database) as store:
        published = await OutboxRelay(store, broker).publish_pending()
    console.say(f"outbox relay published {published} message(s) to topic 'orders'")

    for message in broker.messages:  # in production: KafkaEventConsumer / RabbitMQEventConsumer
        console.say(f"fulfilment consumes {message.message_name} {str(message.key)[:8]}")
        event_type = fulfilment.event_map.notification_type(message.message_name)
        await fulfilment.send(anycqrs.from_dict(event_type, message.payload))

    for placed in (ada, grace):
        view = await ordering.send(GetOrder(placed.order_id))
        short = str(view.order_id)[:8]
        console.say(f"order {short}: {view.customer}, {view.total_cents} cents, {view.status}")
    shop.connection.close()
    console.say("done")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="anycqrs order-service demo")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--database", help="SQLite file (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        database = args.database or str(Path(tmp) / "shop.sqlite3")
        anyio.run(run_demo, args.backend, database, backend=args.backend)


if __name__ == "__main__":
    main()
