"""A command-line Kafka consumer under trio (or asyncio): reads OrderPaid
events from a topic, prints them, stops on Ctrl-C / SIGTERM or after
``--count`` events.

    python examples/kafka_consumer.py --bootstrap localhost:9092 --topic orders \
        --group printer [--count 10] [--produce 10] [--backend trio]

``--produce N`` first publishes N demo events with KafkaMessageBroker, so the
example is self-contained against an empty broker. Log lines (anycqrs's and
librdkafka's own, under ``anycqrs.brokers.kafka.librdkafka.*``) go to stderr
through ``logging``.
"""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

import anyio
import attrs
import lagom

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.events import EventHandler, EventMap, EventMediator


@attrs.frozen
class OrderPaid:
    order_id: int
    amount_cents: int


class Progress:
    """How many events were printed; ``done`` is set at the target count."""

    def __init__(self, target: int | None) -> None:
        self.seen = 0
        self.target = target
        self.done = anyio.Event()


class PrintOrderPaid(EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
        self.progress.seen += 1
        paid = event.payload
        print(f"order {paid.order_id} paid {paid.amount_cents} cents (key={event.key})")
        if self.progress.target is not None and self.progress.seen >= self.progress.target:
            self.progress.done.set()


async def stop_on_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("stopping...")
            scope.cancel()
            return


async def main(args: argparse.Namespace) -> None:
    if args.produce:
        async with KafkaMessageBroker({"bootstrap.servers": args.bootstrap}) as broker:
            await broker.send_many(
                [
                    Message.from_event(
                        anycqrs.NotificationEvent(
                            payload=OrderPaid(order_id=i, amount_cents=100 * i),
                            topic=args.topic,
                            key=f"customer-{i % 3}",
                        )
                    )
                    for i in range(args.produce)
                ]
            )
        print(f"produced {args.produce} events to {args.topic}")

    progress = Progress(args.count)
    container = lagom.Container()
    container[Progress] = progress
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[OrderPaid], PrintOrderPaid)
    mediator = EventMediator(events, container=container)
    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    consumer = KafkaEventConsumer(
        config,
        [args.topic],
        mediator,
        retry=anycqrs.RetryPolicy(attempts=3, delay=0.2),
        dead_letter_topic=f"{args.topic}.dlt",
        unassigned_warning=30.0,  # WARN when this member holds no partition for 30 s
    )
    async with anyio.create_task_group() as group:
        group.start_soon(stop_on_signals, group.cancel_scope)
        await group.start(consumer.run)
        print(f"consuming {args.topic} as {args.group}")
        await progress.done.wait()  # forever without --count
        print(f"partitions held: {sorted(consumer.status.assigned)}")
        group.cancel_scope.cancel()  # graceful: commits what finished, leaves the group
    print(f"done: {progress.seen} events")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--group", default="anycqrs-example")
    parser.add_argument("--count", type=int, default=None, help="stop after N events")
    parser.add_argument("--produce", type=int, default=0, help="publish N demo events first")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(main, arguments, backend=arguments.backend)
