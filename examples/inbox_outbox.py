"""Exactly-once effects: one consumed message -> handler -> domain rows + inbox
row + outbox row, in one SQLite transaction.

Run it with ``python examples/inbox_outbox.py --backend trio``.

An in-memory transport stands in for Kafka or RabbitMQ and delivers what a
real broker may deliver: a message, the same message again (a redelivery
after a crash or a rebalance), a message with no ``event_id`` (poison) and a
message whose handler fails once. The ``ShipOrder`` handler writes a
shipment row and stages an ``OrderShipped`` notification in the outbox,
through the ``InboxTransaction`` it declares in its constructor; the inbox
writes its ``(handler, event_id)`` row in that same transaction. The
redelivery is skipped, the poison message dead-lettered, the failed
attempt rolled back and retried, and the outbox relay publishes each
notification once.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
from pathlib import Path

import anyio
import attrs
import lagom

import anycqrs
from anycqrs import RetryPolicy
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxTransaction, SqliteInbox
from anycqrs.outbox import OutboxRelay, SqliteOutboxStore


@attrs.frozen
class OrderPaid:
    order_id: int


@attrs.frozen
class OrderShipped:
    order_id: int


class Flaky:
    """Makes the handler fail once for one order (a deadlock, a timeout...)."""

    def __init__(self, order_id: int) -> None:
        self.order_id = order_id


class ShipOrder(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
    inbox_name = "shipping.ship-order"  # the inbox identity, stable across renames

    def __init__(self, tx: InboxTransaction, flaky: Flaky) -> None:
        self.tx = tx
        self.flaky = flaky

    async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
        order_id = event.payload.order_id

        def ship(connection: sqlite3.Connection) -> None:
            connection.execute("INSERT INTO shipments (order_id) VALUES (?)", (order_id,))
            self.tx.outbox.add(
                anycqrs.NotificationEvent(
                    payload=OrderShipped(order_id),
                    topic="shipments",
                    event_id=self.tx.derive_id("shipped"),  # the same on a re-run
                )
            )

        await self.tx.run(ship)  # one thread hop, inside the inbox's transaction
        if order_id == self.flaky.order_id:
            self.flaky.order_id = -1
            raise RuntimeError(f"order {order_id}: failing once, after writing")


async def main(database: Path, backend: str) -> None:
    def say(line: str) -> None:
        print(f"[{backend}] {line}", flush=True)

    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS shipments (order_id INTEGER NOT NULL)")
    inbox = SqliteInbox(database, outbox_table="outbox")
    container = lagom.Container()
    container[Flaky] = Flaky(order_id=3)
    mediator = bootstrap(
        di_container=container,
        events_mapper=lambda events: events.bind(anycqrs.NotificationEvent[OrderPaid], ShipOrder),
        inbox=inbox,
    )

    transport = InMemoryTransport()
    first = anycqrs.NotificationEvent(payload=OrderPaid(1), topic="orders")
    transport.put_event(first)
    transport.put_event(anycqrs.NotificationEvent(payload=OrderPaid(2), topic="orders"))
    transport.put_event(first)  # redelivered
    transport.put(json.dumps({"payload": {"order_id": 9}}).encode(), event_name="OrderPaid")
    transport.put_event(anycqrs.NotificationEvent(payload=OrderPaid(3), topic="orders"))
    transport.close()
    await consume(mediator, transport, retry=RetryPolicy(attempts=3, delay=0.0))

    for dead in transport.dead_letters:
        say(f"dead-lettered offset {dead.record.offset}: {type(dead.error).__name__}")
    with sqlite3.connect(database) as connection:
        shipments = [r[0] for r in connection.execute("SELECT order_id FROM shipments")]
    say(f"shipments: {sorted(shipments)}")

    broker = InMemoryMessageBroker()
    relay = OutboxRelay(SqliteOutboxStore(database, table="outbox"), broker)
    published = await relay.publish_pending()
    shipped = sorted(m.payload["payload"]["order_id"] for m in broker.messages)
    say(f"outbox relay published {published} message(s): OrderShipped {shipped}")
    inbox.close()
    say("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--database", type=Path, default=None)
    args = parser.parse_args()
    if args.database is None:
        with tempfile.TemporaryDirectory() as scratch:
            anyio.run(main, Path(scratch) / "inbox.sqlite3", args.backend, backend=args.backend)
    else:
        anyio.run(main, args.database, args.backend, backend=args.backend)
