"""A small order service on anycqrs's embedded defaults: SQLite and the in-memory broker.

Run it with ``nox -s demo`` or ``python examples/order_service.py --backend trio``.

What it shows:

* commands and queries through a ``RequestMediator`` (handlers autowired by lagom,
  one middleware, a SQLite repository called through worker threads);
* domain events handled in-process, notification events published to the broker;
* an ``EventMediator`` consuming what was published, as a service would;
* the same code under asyncio and trio.
"""

from __future__ import annotations

import argparse
import logging
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
from anycqrs.requests.bootstrap import bootstrap as bootstrap_requests

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
class StockReserved(anycqrs.DomainEvent):
    order_id: UUID
    skus: tuple[str, ...]


@attrs.frozen
class OrderAccepted:
    """Payload of the integration event other services consume."""

    order_id: UUID
    customer: str
    total_cents: int


# --- infrastructure: a SQLite repository (blocking calls in worker threads) --------------


class Orders:
    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = anyio.Lock()
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer TEXT,"
                " total_cents INTEGER, status TEXT)"
            )

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self._path) as db:
            return db.execute(sql, params).fetchall()

    async def add(self, order_id: UUID, customer: str, total_cents: int) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(
                self._run,
                "INSERT INTO orders VALUES (?, ?, ?, 'placed')",
                (str(order_id), customer, total_cents),
            )

    async def set_status(self, order_id: UUID, status: str) -> None:
        async with self._lock:
            await anyio.to_thread.run_sync(
                self._run, "UPDATE orders SET status = ? WHERE id = ?", (status, str(order_id))
            )

    async def get(self, order_id: UUID) -> OrderView:
        rows = await anyio.to_thread.run_sync(
            self._run,
            "SELECT customer, total_cents, status FROM orders WHERE id = ?",
            (str(order_id),),
        )
        customer, total, status = rows[0]
        return OrderView(order_id, customer, total, status)


class Console:
    """Where the demo prints (so tests can capture it)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def say(self, text: str) -> None:
        print(f"[{self.backend}] {text}", flush=True)


# --- handlers -------------------------------------------------------------------------------


class PlaceOrderHandler(anycqrs.RequestHandler[PlaceOrder, OrderPlaced]):
    def __init__(self, orders: Orders, console: Console) -> None:
        self.orders = orders
        self.console = console

    async def handle(self, request: PlaceOrder) -> OrderPlaced:
        order_id = uuid4()
        total = sum(line.quantity * line.unit_price_cents for line in request.lines)
        await self.orders.add(order_id, request.customer, total)
        self.console.say(f"order {str(order_id)[:8]} placed for {request.customer}: {total} cents")
        self.emit(StockReserved(order_id, tuple(line.sku for line in request.lines)))
        self.emit(
            anycqrs.NotificationEvent(
                payload=OrderAccepted(order_id, request.customer, total),
                topic="orders",
                key=str(order_id),
            )
        )
        return OrderPlaced(order_id, total)


class GetOrderHandler(anycqrs.RequestHandler[GetOrder, OrderView]):
    def __init__(self, orders: Orders) -> None:
        self.orders = orders

    async def handle(self, request: GetOrder) -> OrderView:
        return await self.orders.get(request.order_id)


class OnStockReserved(anycqrs.EventHandler[StockReserved]):
    def __init__(self, console: Console) -> None:
        self.console = console

    async def handle(self, event: StockReserved) -> None:
        self.console.say(f"stock reserved for {', '.join(event.skus)}")


class ConfirmOrder(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderAccepted]]):
    """Runs in the 'shipping' side, fed from the broker."""

    def __init__(self, orders: Orders, console: Console) -> None:
        self.orders = orders
        self.console = console

    async def handle(self, event: anycqrs.NotificationEvent[OrderAccepted]) -> None:
        await self.orders.set_status(event.payload.order_id, "confirmed")
        self.console.say(f"shipping confirmed order {str(event.payload.order_id)[:8]}")


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


# --- wiring ------------------------------------------------------------------------------------


async def run_demo(backend: str, database: str) -> None:
    console = Console(backend)
    container = lagom.Container()
    container[Orders] = Orders(database)
    container[Console] = console
    broker = InMemoryMessageBroker()

    def commands(requests: anycqrs.RequestMap) -> None:
        requests.bind(PlaceOrder, PlaceOrderHandler)

    def queries(requests: anycqrs.RequestMap) -> None:
        requests.bind(GetOrder, GetOrderHandler)

    mediator = bootstrap_requests(
        di_container=container,
        message_broker=broker,
        middlewares=[Timing(console)],
        commands_mapper=commands,
        queries_mapper=queries,
        domain_events_mapper=lambda events: events.bind(StockReserved, OnStockReserved),
    )
    shipping = bootstrap_events(
        di_container=container,
        events_mapper=lambda events: events.bind(
            anycqrs.NotificationEvent[OrderAccepted], ConfirmOrder
        ),
    )

    placed = await mediator.send(
        PlaceOrder("ada", [OrderLine("book", 2, 1500), OrderLine("pen", 3, 200)])
    )
    await mediator.send(PlaceOrder("grace", [OrderLine("laptop", 1, 99000)]))

    console.say(f"broker holds {len(broker.messages)} message(s) on topic 'orders'")
    for message in broker.messages:  # a consumer would read these from Kafka or RabbitMQ
        event_type = shipping.event_map.notification_type(message.message_name)
        await shipping.send(anycqrs.from_dict(event_type, message.payload))

    view = await mediator.send(GetOrder(placed.order_id))
    console.say(
        f"order {str(view.order_id)[:8]}: {view.customer}, {view.total_cents} cents, {view.status}"
    )
    assert view.status == "confirmed"
    console.say("done")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--database", help="SQLite file (default: a temporary one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        database = args.database or str(Path(tmp) / "orders.sqlite3")
        anyio.run(run_demo, args.backend, database, backend=args.backend)


if __name__ == "__main__":
    main()
