"""Metrics against real services: a Kafka consumer's lag after a known backlog
on Tansu, the Kafka producer's counts, and the outbox backlog (SQLite and
PostgreSQL) measured by `OutboxMonitor`, with its health verdict."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import lagom
import pytest
from confluent_kafka import Producer

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.errors import BrokerDeliveryError
from anycqrs.events import EventHandler, EventMap, EventMediator
from anycqrs.observability import OutboxMonitor
from anycqrs.outbox import (
    OutboxSettlement,
    PostgresOutbox,
    PostgresOutboxStore,
    SqliteOutbox,
    SqliteOutboxStore,
)

from .obs_helpers import Metrics

pytestmark = pytest.mark.anyio

GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200}


@attrs.frozen
class Shipped:
    order_id: int


class Gate:
    """Handlers finish while `open`; otherwise they wait (a backlog builds)."""

    def __init__(self) -> None:
        self.open = True
        self.release = anyio.Event()
        self.seen = 0
        self.arrived = anyio.Event()


class HandleShipped(EventHandler[anycqrs.NotificationEvent[Shipped]]):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def handle(self, event: anycqrs.NotificationEvent[Shipped]) -> None:
        self.gate.seen += 1
        self.gate.arrived.set()
        if not self.gate.open:
            await self.gate.release.wait()


def _mediator(gate: Gate) -> EventMediator:
    container = lagom.Container()
    container[Gate] = gate
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[Shipped], HandleShipped)
    return EventMediator(events, container=container)


def _produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for order_id in range(first, first + count):
        event = anycqrs.NotificationEvent(payload=Shipped(order_id), topic=topic)
        producer.produce(
            topic,
            value=anycqrs.serialization.to_json(event),
            headers={"event_name": event.event_name},
            partition=0,
        )
    assert producer.flush(30) == 0


def _create(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)


class TestKafka:
    """Consumer lag from librdkafka's statistics; producer counts."""

    async def test_lag_after_a_known_backlog(self, kafka_bootstrap: str, unique: str) -> None:
        topic, group = f"obs-lag-{unique}", f"obs-lag-{unique}"
        await anyio.to_thread.run_sync(_create, kafka_bootstrap, topic)
        config = {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            **GROUP,
        }
        gate = Gate()
        await anyio.to_thread.run_sync(_produce, kafka_bootstrap, topic, 0, 10)
        first = KafkaEventConsumer(config, [topic], _mediator(gate), statistics_interval=0.2)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(first.run)
                while gate.seen < 10:
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()  # graceful: offset 10 committed
        # 15 more while nobody reads; the next member blocks on the first one
        await anyio.to_thread.run_sync(_produce, kafka_bootstrap, topic, 10, 15)
        metrics = Metrics()
        gate = Gate()
        gate.open = False
        second = KafkaEventConsumer(
            config,
            [topic],
            _mediator(gate),
            statistics_interval=0.2,
            meter_provider=metrics.provider,
        )
        lag = {"messaging.destination.name": topic, "messaging.destination.partition.id": "0"}
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(second.run)
                await gate.arrived.wait()
                while metrics.value("anycqrs.consumer.lag", **lag) != 15:
                    await anyio.sleep(0.1)
                assert metrics.value("anycqrs.consumer.in_flight") >= 1
                gate.release.set()
                while metrics.value("messaging.client.consumed.messages") < 15:
                    await anyio.sleep(0.05)
                while metrics.value("anycqrs.consumer.lag", **lag) != 0:
                    await anyio.sleep(0.1)
                tg.cancel_scope.cancel()
        assert (
            metrics.value(
                "messaging.client.consumed.messages",
                **{
                    "messaging.consumer.group.name": group,
                    "messaging.system": "kafka",
                },
            )
            == 15
        )

    async def test_producer_counts(self, kafka_bootstrap: str, unique: str) -> None:
        topic = f"obs-produce-{unique}"
        await anyio.to_thread.run_sync(_create, kafka_bootstrap, topic)
        metrics = Metrics()
        config = {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2000}
        event = anycqrs.NotificationEvent(payload=Shipped(1), topic=topic)
        async with KafkaMessageBroker(config, meter_provider=metrics.provider) as broker:
            await broker.send_many([Message.from_event(event) for _ in range(3)])
            huge = attrs.evolve(Message.from_event(event), payload={"blob": "x" * 5000})
            with pytest.raises(BrokerDeliveryError):
                await broker.send_message(huge)
        assert metrics.value("messaging.client.sent.messages") == 3
        assert metrics.value("anycqrs.producer.delivery_failures") == 1
        assert metrics.points("anycqrs.producer.queue_depth")


class TestRabbitMQ:
    """The RabbitMQ producer's counts."""

    async def test_producer_counts(self, rabbitmq_url: str, unique: str) -> None:
        import pika

        from anycqrs.brokers.rabbitmq import RabbitMQMessageBroker

        queue = f"obs-produce-{unique}"

        def declare(delete: bool = False) -> None:
            connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
            try:
                channel = connection.channel()
                if delete:
                    channel.queue_delete(queue)
                else:
                    channel.queue_declare(queue)
            finally:
                connection.close()

        await anyio.to_thread.run_sync(declare)
        metrics = Metrics()
        try:
            async with RabbitMQMessageBroker(
                rabbitmq_url, meter_provider=metrics.provider
            ) as broker:
                routed = anycqrs.NotificationEvent(payload=Shipped(1), topic=queue)
                await broker.send_many([Message.from_event(routed) for _ in range(2)])
                nowhere = anycqrs.NotificationEvent(payload=Shipped(2), topic=f"nowhere-{unique}")
                with pytest.raises(BrokerDeliveryError):
                    await broker.send_message(Message.from_event(nowhere))
        finally:
            await anyio.to_thread.run_sync(declare, True)
        system = {"messaging.system": "rabbitmq"}
        assert metrics.value("messaging.client.sent.messages", **system) == 2
        assert metrics.value("anycqrs.producer.delivery_failures", **system) == 1
        assert not metrics.points("anycqrs.producer.queue_depth")


@attrs.frozen
class Placed:
    order_id: int


class _Outbox:
    """One outbox table on one database: add rows, dead-letter some."""

    def __init__(self, kind: str, tmp_path: Path, unique: str, dsn: str | None) -> None:
        self.kind = kind
        self.table = f"obs_outbox_{unique}"
        self.path = tmp_path / "app.db"
        self.dsn = dsn
        self.store: Any = (
            SqliteOutboxStore(self.path, table=self.table)
            if kind == "sqlite"
            else PostgresOutboxStore(dsn, table=self.table)
        )
        self.store.ensure_schema()

    def add(self, count: int) -> None:
        events = [
            anycqrs.NotificationEvent(payload=Placed(i), topic="orders") for i in range(count)
        ]
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path)) as connection, connection:
                SqliteOutbox(connection, table=self.table).add_many(events)
        else:
            import psycopg

            with psycopg.connect(self.dsn) as connection, connection.transaction():
                PostgresOutbox(connection, table=self.table).add_many(events)

    def kill(self, count: int, now: datetime) -> None:
        records = self.store.claim(limit=count, now=now, lease=60.0, token="test")
        dead = [(record.id, "rejected") for record in records]
        self.store.settle("test", OutboxSettlement(dead=dead), now=now)

    def close(self) -> None:
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as connection:
                connection.execute(f'DROP TABLE IF EXISTS "{self.table}"'.encode())
        self.store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[_Outbox]:
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else None
    harness = _Outbox(request.param, tmp_path, unique, dsn)
    try:
        yield harness
    finally:
        harness.close()


class TestOutbox:
    """`OutboxMonitor`: backlog, oldest age and dead rows, as gauges and health."""

    async def test_backlog_after_n_rows(self, outbox: _Outbox) -> None:
        metrics = Metrics()
        later = [anycqrs._persistence.utcnow()]
        monitor = OutboxMonitor(
            outbox.store,
            max_age=300,
            name=outbox.table,
            meter_provider=metrics.provider,
            clock=lambda: later[0],
        )
        assert monitor.health().ready is False  # not measured yet
        await monitor.refresh()
        assert monitor.health().ready
        assert metrics.value("anycqrs.outbox.backlog") == 0
        assert metrics.value("anycqrs.outbox.oldest_age") == 0
        await anyio.to_thread.run_sync(outbox.add, 7)
        later[0] = anycqrs._persistence.utcnow() + timedelta(seconds=100)
        snapshot = await monitor.refresh()
        assert (snapshot.pending, snapshot.dead) == (7, 0)
        table = {"anycqrs.outbox.table": outbox.table}
        assert metrics.value("anycqrs.outbox.backlog", **table) == 7
        assert 100 <= metrics.value("anycqrs.outbox.oldest_age", **table) < 160
        assert monitor.health().ready  # 100 s < max_age
        await anyio.to_thread.run_sync(outbox.kill, 2, later[0])
        later[0] += timedelta(seconds=300)
        await monitor.refresh()
        assert metrics.value("anycqrs.outbox.backlog") == 5
        assert metrics.value("anycqrs.outbox.dead") == 2
        check = monitor.health()
        assert (check.live, check.ready) == (True, False)
        assert "oldest pending row" in check.reasons[0]
        assert check.details["pending"] == 5

    async def test_query_failure_is_not_ready(self, outbox: _Outbox) -> None:
        monitor = OutboxMonitor(_Broken(), name="broken")
        with pytest.raises(RuntimeError):
            await monitor.refresh()
        check = monitor.health()
        assert not check.ready and "cannot be queried" in check.reasons[0]

    async def test_run_measures_on_its_schedule(self, outbox: _Outbox) -> None:
        await anyio.to_thread.run_sync(outbox.add, 3)
        monitor = OutboxMonitor(outbox.store, interval=0.05)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(monitor.run)
                while monitor.snapshot is None:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert monitor.snapshot.pending == 3


class _Broken:
    def counts(self) -> dict[Any, int]:
        raise RuntimeError("database is down")

    def fetch(self, **_: Any) -> list[Any]:
        return []
