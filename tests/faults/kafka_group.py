"""Kafka consumers SIGKILLed in a group.

Three consumer processes (asyncio and trio, alternating) share one group on a
6-partition topic while the parent produces keyed events at a steady rate.
Every 1–3 s one consumer is SIGKILLed and a new one starts. Afterwards the
group must handle every produced event (duplicates allowed: a killed
consumer's uncommitted work is redone) and each key's events must be handled,
for the first time, in the order they were produced.
"""

from __future__ import annotations

import time

import anyio

from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker

from .harness import (
    Child,
    Pool,
    Settings,
    Tansu,
    backend_of,
    consumer_config,
    create_topic,
    unique,
    wait_until,
)
from .ledger import Outcome
from .model import Producer, handled, order_of, recording_mediator
from .worker import ready

PARTITIONS = 6


async def consume(
    bootstrap: str, topic: str, group: str, ledger: str, delay: float = 0.0, dlq: str | None = None
) -> None:
    """Child: a `KafkaEventConsumer` recording what it handles."""
    consumer = KafkaEventConsumer(
        consumer_config(bootstrap, group),
        [topic],
        recording_mediator(ledger, delay),
        max_concurrency=8,
        dead_letter_topic=dlq,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        ready()


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("kafka-group-kill")
    rng = settings.rng(outcome.name)
    ledger = str(settings.workdir / "kafka-group.ledger")
    with Tansu() as tansu:
        topic, group = f"faults-{unique()}", f"faults-g-{unique()}"
        create_topic(tansu.bootstrap, topic, PARTITIONS)

        def spawn(generation: int) -> Child:
            return Child(
                settings.workdir,
                f"kafka-consumer-{generation}",
                "kafka_group",
                "consume",
                backend=backend_of(generation),
                bootstrap=tansu.bootstrap,
                topic=topic,
                group=group,
                ledger=ledger,
                delay=0.01,
            )

        pool = Pool(spawn, 3)
        try:
            for child in pool.all():
                if not child.wait_ready():
                    outcome.problem(child.crashed() or f"{child.name} did not start")
            config = {"bootstrap.servers": tansu.bootstrap}
            with Producer(lambda: KafkaMessageBroker(config), topic, rate=150) as producer:
                deadline = time.monotonic() + settings.duration(15, 40)
                while time.monotonic() < deadline:
                    time.sleep(rng.uniform(1.0, 3.0))
                    pool.kill_one(rng)
                    outcome.faults += 1
                    pool.replace_crashed()
            sent = set(producer.sent)

            def drained() -> bool:
                pool.replace_crashed()
                return sent <= set(handled(ledger))

            if not wait_until(drained, 120, 0.5):
                outcome.problem("the group did not handle every event within 120 s")
            outcome.problems.extend(pool.crashes)
            outcome.problems.extend(f"producer: {e}" for e in producer.errors[:3])
        finally:
            pool.stop()
    outcome.tally(producer.sent, handled(ledger), order_of)
    outcome.notes.append(f"{pool.generation} consumer processes in all")
    return outcome
