"""Moving one service from python-cqrs to anycqrs while its neighbour stays.

Two services talk over one topic in python-cqrs 5.x's wire format (camelCase
JSON, no headers). *Billing* still runs python-cqrs: its `PayOrder` handler
emits an `OrderPaid` notification that its broker puts on the wire.
*Shipping* has moved to anycqrs: it consumes that topic with
`PythonCqrsCodec`, ships the order in a SQLite transaction that also writes
an `OrderShipped` event to its outbox, and the relay publishes it in the same
python-cqrs format; billing's python-cqrs event mediator handles it.

The topic is in memory (a list of bytes), so the example needs no broker.
python-cqrs runs on asyncio: it gets its own event loop in a worker thread,
while shipping runs on the backend you pick.

Run: ``python examples/migrate_from_python_cqrs.py [--backend trio]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sqlite3
import tempfile
from pathlib import Path

import anyio
import anyio.to_thread
import attrs
import cqrs
import di
import lagom
from cqrs.bootstrap.events import bootstrap as cqrs_event_bootstrap
from cqrs.bootstrap.requests import bootstrap as cqrs_request_bootstrap
from cqrs.deserializers import JsonDeserializer
from cqrs.message_brokers.protocol import MessageBroker as CqrsMessageBroker
from cqrs.serializers.default import message_wire_bytes

import anycqrs
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.codecs import PythonCqrsCodec
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.events import EventMap, EventMediator
from anycqrs.outbox import OutboxRelay, SqliteOutbox, SqliteOutboxStore

TOPIC: list[bytes] = []  # the shared "orders" topic: what each side puts on the wire

# --- billing: still python-cqrs 5.x -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BillingOrderPaid:
    order_id: int
    amount_cents: int


class OrderPaidEvent(cqrs.NotificationEvent[BillingOrderPaid]):
    event_name: str = "OrderPaid"


@dataclasses.dataclass(frozen=True)
class BillingOrderShipped:
    order_id: int
    tracking_code: str


class OrderShippedEvent(cqrs.NotificationEvent[BillingOrderShipped]):
    event_name: str = "OrderShipped"


class PayOrder(cqrs.Request):
    order_id: int
    amount_cents: int


class PayOrderHandler(cqrs.RequestHandler[PayOrder, None]):
    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._events

    async def handle(self, request: PayOrder) -> None:
        paid = BillingOrderPaid(order_id=request.order_id, amount_cents=request.amount_cents)
        self._events.append(OrderPaidEvent(topic="orders", payload=paid))


class TopicBroker(CqrsMessageBroker):
    """python-cqrs's broker interface over the in-memory topic."""

    async def send_message(self, message: cqrs.message_brokers.protocol.Message) -> None:
        TOPIC.append(message_wire_bytes(message))


class NoteShipment(cqrs.EventHandler[OrderShippedEvent]):
    shipped: list[OrderShippedEvent] = []  # noqa: RUF012 - the example's record

    async def handle(self, event: OrderShippedEvent) -> None:
        NoteShipment.shipped.append(event)


def billing_pays(order_ids: list[int]) -> None:
    async def main() -> None:
        mediator = cqrs_request_bootstrap(
            di_container=di.Container(),
            message_broker=TopicBroker(),
            commands_mapper=lambda m: m.bind(PayOrder, PayOrderHandler),
        )
        for order_id in order_ids:
            await mediator.send(PayOrder(order_id=order_id, amount_cents=1000 * order_id))

    asyncio.run(main())


def billing_reads(messages: list[bytes]) -> None:
    async def main() -> None:
        mediator = cqrs_event_bootstrap(
            di_container=di.Container(),
            events_mapper=lambda m: m.bind(OrderShippedEvent, NoteShipment),
        )
        read = JsonDeserializer(OrderShippedEvent)
        for raw in messages:
            event = read(raw)
            assert isinstance(event, OrderShippedEvent), event
            await mediator.send(event)

    asyncio.run(main())


# --- shipping: moved to anycqrs ------------------------------------------------------


@attrs.frozen
class OrderPaid:  # the same event, as an anycqrs payload (the wire name is the class name)
    order_id: int
    amount_cents: int


@attrs.frozen
class OrderShipped:
    order_id: int
    tracking_code: str


class Shipping:
    """Shipping's database: the shipments table and the outbox in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, check_same_thread=False)
        self.connection.execute("CREATE TABLE IF NOT EXISTS shipments (order_id INTEGER)")
        self.outbox = SqliteOutbox(self.connection, compression="zlib")

    def ship(self, order_id: int) -> None:
        def work() -> None:
            self.connection.execute("INSERT INTO shipments VALUES (?)", (order_id,))
            shipped = OrderShipped(order_id=order_id, tracking_code=f"TRK-{order_id:04d}")
            self.outbox.add(anycqrs.NotificationEvent(payload=shipped, topic="orders"))

        self.outbox.transaction(work)  # the shipment and its event commit together


class ShipPaidOrder(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
    def __init__(self, shipping: Shipping) -> None:
        self.shipping = shipping

    async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
        print(f"shipping: order {event.payload.order_id} paid ({event.payload.amount_cents} cents)")
        await anyio.to_thread.run_sync(self.shipping.ship, event.payload.order_id)


async def main(database: Path) -> None:
    await anyio.to_thread.run_sync(billing_pays, [1, 2, 3])
    print(f"billing (python-cqrs) wrote {len(TOPIC)} messages, e.g. {TOPIC[0][:44]!r}...")

    shipping = Shipping(database)
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[OrderPaid], ShipPaidOrder)
    container = lagom.Container()
    container[Shipping] = shipping
    mediator = EventMediator(events, container=container)

    # consume billing's messages: python-cqrs's wire in, strict anycqrs events out
    transport = InMemoryTransport()
    for raw in TOPIC:
        transport.put(raw, topic="orders")
    transport.close()
    with anyio.fail_after(30):
        await consume(mediator, transport, codec=PythonCqrsCodec())
    print(f"shipping (anycqrs) handled {len(transport.settled)} messages")

    # relay the outbox in python-cqrs's format back to the topic
    broker = InMemoryMessageBroker(codec=PythonCqrsCodec([OrderShipped]))
    with SqliteOutboxStore(database) as store:
        published = await OutboxRelay(store, broker).publish_pending()
    print(f"outbox relay published {published} message(s)")
    replies = [broker.encoded(message) for message in broker.messages]

    await anyio.to_thread.run_sync(billing_reads, replies)
    for event in NoteShipment.shipped:
        print(f"billing (python-cqrs) saw order {event.payload['orderId']} shipped: "
              f"{event.payload['trackingCode']}")  # fmt: skip
    shipping.connection.close()
    print("done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(main, Path(folder) / "shipping.db", backend=args.backend)
