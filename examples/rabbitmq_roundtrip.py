"""Publish notification events to RabbitMQ and consume them back through an
EventMediator, with a retry policy and a dead-letter exchange.

    python examples/rabbitmq_roundtrip.py [--url amqp://guest:guest@127.0.0.1:5672/%2F]
                                          [--backend asyncio|trio] [--count 5]

Declares a topic exchange and a queue with unique names and deletes them at the end.
"""

from __future__ import annotations

import argparse
import uuid

import anyio
import anyio.to_thread
import attrs
import lagom
import pika

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer, RabbitMQMessageBroker
from anycqrs.events import EventHandler, EventMap, EventMediator


@attrs.frozen
class ParcelShipped:
    parcel_id: int
    carrier: str


class Seen:
    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.all = anyio.Event()


class PrintShipped(EventHandler[anycqrs.NotificationEvent[ParcelShipped]]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: anycqrs.NotificationEvent[ParcelShipped]) -> None:
        print(f"parcel {event.payload.parcel_id} shipped with {event.payload.carrier}")
        self.seen.count += 1
        if self.seen.count >= self.seen.target:
            self.seen.all.set()


def cleanup(url: str, exchanges: list[str], queues: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for queue in queues:
        channel.queue_delete(queue)
    for exchange in exchanges:
        channel.exchange_delete(exchange)
    connection.close()


async def main(url: str, count: int) -> None:
    suffix = uuid.uuid4().hex[:8]
    exchange, queue, dlx = f"parcels-{suffix}", f"parcel-printer-{suffix}", f"parcels-dlx-{suffix}"
    seen = Seen(count)
    container = lagom.Container()
    container[Seen] = seen
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[ParcelShipped], PrintShipped)
    mediator = EventMediator(events, container=container)
    consumer = RabbitMQEventConsumer(
        url,
        queue,
        mediator,
        bindings=[(exchange, "parcels.#")],
        prefetch=16,
        retry=anycqrs.RetryPolicy(attempts=3, delay=0.1),
        dead_letter_exchange=dlx,
    )
    try:
        async with anyio.create_task_group() as group:
            await group.start(consumer.run)
            async with RabbitMQMessageBroker(url, exchange=exchange) as broker:
                await broker.send_many(
                    [
                        Message.from_event(
                            anycqrs.NotificationEvent(
                                payload=ParcelShipped(parcel_id=i, carrier="dhl"),
                                topic="parcels.shipped",
                                key=f"parcel-{i}",
                            )
                        )
                        for i in range(count)
                    ]
                )
            with anyio.fail_after(30):
                await seen.all.wait()
            group.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(cleanup, url, [exchange, dlx], [queue])
    print(f"done: {seen.count} events")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="RabbitMQ round trip with anycqrs")
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.url, args.count, backend=args.backend)
