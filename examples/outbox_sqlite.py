"""Transactional outbox on SQLite: an order row and its event commit atomically,
then a relay publishes the event to a broker.

Run: ``python examples/outbox_sqlite.py`` (add ``trio`` to run under trio).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

import anyio
import attrs

from anycqrs import NotificationEvent, RetryPolicy
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.outbox import OutboxRelay, SqliteOutbox, SqliteOutboxStore


@attrs.frozen
class OrderPlaced:
    order_id: int
    amount: int


class OutOfStock(Exception):
    pass


async def main(path: Path) -> None:
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
    outbox = SqliteOutbox(conn)

    def place_order(order_id: int, amount: int) -> None:
        # Runs in a worker thread, inside one transaction (run_in_transaction).
        conn.execute("INSERT INTO orders (id, amount) VALUES (?, ?)", (order_id, amount))
        event = NotificationEvent(
            payload=OrderPlaced(order_id=order_id, amount=amount),
            topic="orders",
            key=str(order_id),
        )
        outbox.add(event)
        if amount > 100:
            raise OutOfStock(f"order {order_id}: not enough stock")

    await outbox.run_in_transaction(place_order, 1, 30)
    try:
        await outbox.run_in_transaction(place_order, 2, 500)
    except OutOfStock as exc:
        print(f"rolled back: {exc} (neither the order nor its event was stored)")
    await outbox.run_in_transaction(place_order, 3, 70)

    orders = conn.execute("SELECT id FROM orders ORDER BY id").fetchall()
    print("orders in the database:", [row[0] for row in orders])

    broker = InMemoryMessageBroker()
    with SqliteOutboxStore(path) as store:
        # Failed publishes are retried with backoff (the one RetryPolicy), then dead-lettered.
        retry = RetryPolicy(attempts=5, delay=0.5, multiplier=2.0, max_delay=30.0, jitter=0.1)
        relay = OutboxRelay(store, broker, batch_size=50, retry=retry)
        sent = await relay.publish_pending()  # one pass; long-running: tg.start(relay.run)
        print(f"relay published {sent} message(s):")
        for message in broker.messages:
            print(f"  {message.topic} {message.message_name} key={message.key} {message.payload}")
        print("outbox rows by status:", {str(k): v for k, v in store.counts().items()})
    conn.close()


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, Path(directory) / "shop.db", backend=backend)
