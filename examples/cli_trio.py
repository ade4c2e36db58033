"""A command-line tool on anycqrs, under trio: an order desk on SQLite.

    python examples/cli_trio.py --database shop.db place ada 3
    python examples/cli_trio.py --database shop.db pending
    python examples/cli_trio.py --database shop.db publish

``place`` sends a command through a `RequestMediator`; its handler writes the order
and an ``OrderPlaced`` event to the outbox in one transaction. ``pending`` counts
what the outbox holds; ``publish`` runs the relay once (`publish_pending`) into a
broker that prints each message: a stand-in for Kafka, and a broker written from
the `MessageBroker` protocol. Ctrl-C (SIGINT) or SIGTERM cancels the run cleanly:
what was published so far is recorded, the rest stays pending.

The library code never imports trio or asyncio: ``--backend asyncio`` runs the
same tool on asyncio.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
from collections.abc import Sequence

import anyio
import attrs
import lagom

import anycqrs
from anycqrs.brokers import Message
from anycqrs.outbox import OutboxRelay, OutboxStatus, SqliteOutbox, SqliteOutboxStore
from anycqrs.requests.bootstrap import bootstrap


@attrs.frozen
class OrderPlaced:
    order_id: int
    customer: str
    quantity: int


@attrs.frozen
class Placed(anycqrs.Response):
    order_id: int


@attrs.frozen
class PlaceOrder(anycqrs.Request[Placed]):
    customer: str
    quantity: int


# --8<-- [start:handler]
class PlaceOrderHandler(anycqrs.RequestHandler[PlaceOrder, Placed]):
    def __init__(self, outbox: SqliteOutbox) -> None:
        self.outbox = outbox

    async def handle(self, request: PlaceOrder) -> Placed:
        def tx() -> int:  # one transaction, in a worker thread
            cursor = self.outbox.connection.execute(
                "INSERT INTO orders (customer, quantity) VALUES (?, ?)",
                (request.customer, request.quantity),
            )
            assert cursor.lastrowid is not None
            event = OrderPlaced(cursor.lastrowid, request.customer, request.quantity)
            self.outbox.add(anycqrs.NotificationEvent(payload=event, topic="orders"))
            return cursor.lastrowid

        return Placed(order_id=await self.outbox.run_in_transaction(tx))


# --8<-- [end:handler]


class PrintingBroker:
    """A `MessageBroker` (and a batch one) that prints what it is given."""

    async def send_message(self, message: Message, /) -> None:
        await self.send_many([message])

    async def send_many(self, messages: Sequence[Message], /) -> None:
        for message in messages:
            print(
                f"published {message.message_name} to {message.topic}: {message.payload['payload']}"
            )


def connect(database: str) -> sqlite3.Connection:
    conn = sqlite3.connect(database, isolation_level="IMMEDIATE", check_same_thread=False)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS orders"
        " (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, quantity INTEGER NOT NULL)"
    )
    return conn


async def place(args: argparse.Namespace) -> None:
    conn = connect(args.database)
    try:
        container = lagom.Container()
        container[SqliteOutbox] = SqliteOutbox(conn)
        mediator = bootstrap(
            di_container=container,
            commands_mapper=lambda requests: requests.bind(PlaceOrder, PlaceOrderHandler),
        )
        placed = await mediator.send(PlaceOrder(args.customer, args.quantity))
        print(f"order {placed.order_id} placed for {args.customer}")
    finally:
        conn.close()


async def pending(args: argparse.Namespace) -> None:
    store = SqliteOutboxStore(args.database)
    try:
        counts = await anyio.to_thread.run_sync(store.counts)
        print(f"pending: {counts.get(OutboxStatus.PENDING, 0)}")
    finally:
        store.close()


# --8<-- [start:publish]
async def publish(args: argparse.Namespace) -> None:
    store = SqliteOutboxStore(args.database)
    try:
        sent = await OutboxRelay(store, PrintingBroker()).publish_pending()
        print(f"published {sent} message(s)")
    finally:
        store.close()


# --8<-- [end:publish]


# --8<-- [start:main]
async def main(args: argparse.Namespace) -> None:
    async with anyio.create_task_group() as tg:

        async def stop_on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    print("interrupted")
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signals)
        await args.command(args)
        tg.cancel_scope.cancel()  # done: stop listening for signals


# --8<-- [end:main]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="an order desk on SQLite")
    parser.add_argument("--database", default="shop.db")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    commands = parser.add_subparsers(required=True)
    command = commands.add_parser("place", help="place an order")
    command.add_argument("customer")
    command.add_argument("quantity", type=int)
    command.set_defaults(command=place)
    commands.add_parser("pending", help="count pending messages").set_defaults(command=pending)
    commands.add_parser("publish", help="publish pending messages").set_defaults(command=publish)
    return parser.parse_args(argv)


# --8<-- [start:run]
if __name__ == "__main__":
    arguments = parse()
    anyio.run(main, arguments, backend=arguments.backend)
# --8<-- [end:run]
