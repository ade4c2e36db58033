"""FastStream recipe: an anycqrs `EventMediator` behind a FastStream subscriber.

    python examples/faststream_app.py                         # FastStream's TestKafkaBroker
    python examples/faststream_app.py --bootstrap 127.0.0.1:9092 --topic orders

FastStream owns the Kafka connection and the subscriber loop; anycqrs owns
the handlers. The pieces:

* `FastStreamPublisher`: an `anycqrs.brokers.MessageBroker` publishing through
  the FastStream broker, in anycqrs's wire format (value = JSON of
  `to_dict(event)`, headers `event_name` and `message_id`), so a
  `RequestMediator`'s notification events go out through FastStream.
* `on_order_paid`: the FastStream subscriber. It decodes the record with
  `anycqrs.consumers.EventDecoder` (strict: routed by the `event_name`
  header to the bound `NotificationEvent[P]`) and hands it to
  `EventMediator.send`. A handler's exception propagates to FastStream,
  which then does not acknowledge the message (its retry and ack policy
  applies).
* The container is scoped (`ScopedLagomContainer`): every event handler run
  is one unit of work with its own `Ledger` entry, committed when the handler
  returns.

FastStream runs on asyncio only (its Kafka brokers use asyncio directly), so
this example does too; under trio, use anycqrs's own `KafkaEventConsumer`.
"""

from __future__ import annotations

import argparse
import contextlib
import uuid
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import attrs
import lagom
from faststream.confluent import KafkaBroker, TestKafkaBroker
from faststream.confluent.annotations import KafkaMessage

import anycqrs
from anycqrs.brokers import Message
from anycqrs.consumers import EventDecoder
from anycqrs.container import ScopedLagomContainer
from anycqrs.events.bootstrap import bootstrap as events_bootstrap
from anycqrs.requests.bootstrap import bootstrap as requests_bootstrap
from anycqrs.serialization import dumps


@attrs.frozen
class OrderPaid:
    order_id: int
    amount_cents: int


@attrs.frozen
class PayOrder(anycqrs.Request):
    order_id: int
    amount_cents: int


class Ledger:
    """Committed entries (stands in for a database)."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.received = anyio.Event()
        self.expected = 0


class Entry:
    """One unit of work's pending lines; committed to the `Ledger` at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []


class FastStreamPublisher:
    """An `anycqrs.brokers.MessageBroker` over a FastStream `KafkaBroker`."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def send_message(self, message: Message) -> None:
        headers = {"event_name": message.message_name, "message_id": str(message.message_id)}
        headers.update(message.headers)
        await self.broker.publish(
            dumps(message.payload), message.topic, key=message.key, headers=headers
        )


class PayOrderHandler(anycqrs.RequestHandler[PayOrder, None]):
    topic = "orders"

    async def handle(self, request: PayOrder) -> None:
        payload = OrderPaid(request.order_id, request.amount_cents)
        self.emit(
            anycqrs.NotificationEvent(
                payload=payload, topic=PayOrderHandler.topic, key=str(request.order_id)
            )
        )


class BookOrderPaid(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
    def __init__(self, entry: Entry, ledger: Ledger) -> None:
        super().__init__()
        self.entry = entry
        self.ledger = ledger

    async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
        paid = event.payload
        self.entry.lines.append(f"order {paid.order_id}: {paid.amount_cents} cents")


def build(broker: KafkaBroker, topic: str, group: str) -> tuple[anycqrs.RequestMediator, Ledger]:
    """Wire the subscriber, the event mediator and a request mediator
    publishing through FastStream."""
    ledger = Ledger()
    container = lagom.Container()
    container[Ledger] = ledger

    @contextlib.asynccontextmanager
    async def entry() -> AsyncIterator[Entry]:
        pending = Entry()
        yield pending  # an exception skips the commit: the entry is dropped
        ledger.committed.extend(pending.lines)
        if len(ledger.committed) >= ledger.expected:
            ledger.received.set()

    scoped = ScopedLagomContainer(container, scoped={Entry: entry})
    events = events_bootstrap(
        di_container=scoped,
        events_mapper=lambda m: m.bind(anycqrs.NotificationEvent[OrderPaid], BookOrderPaid),
    )
    decode = EventDecoder(events.event_map)

    @broker.subscriber(topic, group_id=group, auto_offset_reset="earliest", session_timeout_ms=6000)
    async def on_order_paid(message: KafkaMessage) -> None:
        # the raw record, not FastStream's JSON-decoded body: anycqrs decodes strictly
        event = decode(message.body, message.headers.get("event_name"), topic, None)
        await events.send(event)

    PayOrderHandler.topic = topic
    requests = requests_bootstrap(
        message_broker=FastStreamPublisher(broker),
        commands_mapper=lambda m: m.bind(PayOrder, PayOrderHandler),
    )
    return requests, ledger


async def pay_and_wait(requests: anycqrs.RequestMediator, ledger: Ledger, count: int) -> None:
    ledger.expected = count
    for order_id in range(1, count + 1):
        await requests.send(PayOrder(order_id, order_id * 100))
    with anyio.fail_after(60):
        await ledger.received.wait()
    for line in ledger.committed:
        print(f"booked {line}")


def create_topic(bootstrap: str, topic: str) -> None:
    """Create `topic` (one partition) unless it exists (blocking: run in a thread)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        try:
            future.result(30)
        except Exception as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise


async def demo(bootstrap: str | None, topic: str, count: int) -> None:
    broker = KafkaBroker(bootstrap or "localhost:9092")
    requests, ledger = build(broker, topic, group=f"ledger-{uuid.uuid4().hex[:8]}")
    if bootstrap is None:
        async with TestKafkaBroker(broker):
            await pay_and_wait(requests, ledger, count)
    else:
        await anyio.to_thread.run_sync(create_topic, bootstrap, topic)
        async with broker:
            await broker.start()
            await pay_and_wait(requests, ledger, count)
    print("done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: TestKafkaBroker)")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--count", type=int, default=3)
    arguments = parser.parse_args()
    anyio.run(demo, arguments.bootstrap, arguments.topic, arguments.count, backend="asyncio")


if __name__ == "__main__":
    main()
