"""Exactly-once effects under SIGKILL: Kafka consumers with a PostgreSQL inbox.

10,000 keyed events (short mode; 30,000 long) are on a 6-partition topic
before three consumer processes (asyncio and trio, alternating) join one
group. Every handler writes an effect row in its inbox transaction
(PostgreSQL); every 1–3 s a random consumer is SIGKILLed and a new one
starts, so work is redone: uncommitted offsets, rebalances, transactions
killed mid-flight. Afterwards every event must have exactly one effect
row (0 lost, 0 duplicate effects) and each key's effects must be in the
order the events were produced. (The RabbitMQ twin is `inbox_rabbitmq`.)
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import lagom

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.events import EventHandler, EventMediator
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxTransaction, PostgresInbox

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
from .model import Tick, order_of, tick
from .worker import ready

PARTITIONS = 6


class Tables:
    """The scenario's PostgreSQL tables: the inbox and the effects."""

    def __init__(self, dsn: str, suffix: str) -> None:
        self.dsn = dsn
        self.inbox = f"faults_inbox_{suffix}"
        self.effects = f"faults_effects_{suffix}"

    def create(self) -> None:
        self._execute(
            f"CREATE TABLE {self.effects} (id BIGSERIAL PRIMARY KEY, n INTEGER NOT NULL, "
            "pid INTEGER NOT NULL)"
        )

    def drop(self) -> None:
        for table in (self.inbox, self.effects):
            self._execute(f"DROP TABLE IF EXISTS {table}")

    def effects_in_order(self) -> list[int]:
        return [int(row[0]) for row in self._execute(f"SELECT n FROM {self.effects} ORDER BY id")]

    def _execute(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as connection:
            cursor = connection.execute(sql.encode())
            return cursor.fetchall() if cursor.description else []


class Effects:
    """What the handler writes with (one per process)."""

    def __init__(self, table: str) -> None:
        import os

        self.insert = f"INSERT INTO {table} (n, pid) VALUES (%s, %s)".encode()
        self.pid = os.getpid()

    def write(self, connection: Any, n: int) -> None:
        connection.execute(self.insert, (n, self.pid))


class RecordEffect(EventHandler[anycqrs.NotificationEvent[Tick]]):
    """Writes the event's effect row in the inbox transaction."""

    def __init__(self, tx: InboxTransaction, effects: Effects) -> None:
        self.tx = tx
        self.effects = effects

    async def handle(self, event: anycqrs.NotificationEvent[Tick]) -> None:
        await self.tx.run(self.effects.write, event.payload.n)


def guarded_mediator(dsn: str, inbox_table: str, effects_table: str) -> EventMediator:
    container = lagom.Container()
    container[Effects] = Effects(effects_table)
    return bootstrap(
        di_container=container,
        events_mapper=lambda events: events.bind(anycqrs.NotificationEvent[Tick], RecordEffect),
        inbox=PostgresInbox(dsn, table=inbox_table, max_transactions=8),
    )


async def consume(
    bootstrap: str, topic: str, group: str, dsn: str, inbox: str, effects: str
) -> None:
    """Child: a `KafkaEventConsumer` into the guarded mediator."""
    consumer = KafkaEventConsumer(
        consumer_config(bootstrap, group),
        [topic],
        guarded_mediator(dsn, inbox, effects),
        max_concurrency=8,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        ready()


async def _produce(bootstrap: str, topic: str, count: int) -> None:
    async with KafkaMessageBroker({"bootstrap.servers": bootstrap}) as broker:
        for start in range(0, count, 1000):
            batch = range(start, min(start + 1000, count))
            await broker.send_many([Message.from_event(tick(n, topic)) for n in batch])


def judge(outcome: Outcome, sent: list[int], effects: list[int]) -> None:
    """Tally, and make a duplicate effect a failure (the inbox promises none)."""
    outcome.tally(sent, effects, order_of)
    if outcome.duplicated:
        outcome.problem(f"{outcome.duplicated} duplicate effect(s): the inbox let a redo commit")


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("inbox-kafka-kill")
    rng = settings.rng(outcome.name)
    tables = Tables(settings.postgres_dsn, unique())
    count = 30_000 if settings.long else 10_000
    sent = list(range(count))
    tables.create()
    try:
        with Tansu() as tansu:
            topic, group = f"faults-inbox-{unique()}", f"faults-inbox-g-{unique()}"
            create_topic(tansu.bootstrap, topic, PARTITIONS)
            anyio.run(_produce, tansu.bootstrap, topic, count)

            def spawn(generation: int) -> Child:
                return Child(
                    settings.workdir,
                    f"inbox-consumer-{generation}",
                    "inbox",
                    "consume",
                    backend=backend_of(generation),
                    bootstrap=tansu.bootstrap,
                    topic=topic,
                    group=group,
                    dsn=settings.postgres_dsn,
                    inbox=tables.inbox,
                    effects=tables.effects,
                )

            pool = Pool(spawn, 3)
            try:
                for child in pool.all():
                    if not child.wait_ready():
                        outcome.problem(child.crashed() or f"{child.name} did not start")
                deadline = time.monotonic() + settings.duration(20, 60)
                done = False
                while time.monotonic() < deadline and not done:
                    time.sleep(rng.uniform(1.0, 3.0))
                    done = len(tables.effects_in_order()) >= count
                    if not done:
                        pool.kill_one(rng)
                        outcome.faults += 1
                    pool.replace_crashed()

                def drained() -> bool:
                    pool.replace_crashed()
                    return len(set(tables.effects_in_order())) >= count

                if not wait_until(drained, 120, 0.5):
                    outcome.problem("the group did not handle every event within 120 s")
                outcome.problems.extend(pool.crashes)
            finally:
                pool.stop()
        effects = tables.effects_in_order()
        judge(outcome, sent, effects)
        outcome.notes.append(
            f"{pool.generation} consumer processes in all; {len(effects)} effect rows"
        )
    finally:
        tables.drop()
    return outcome
