"""The inbox behind consumers: the in-memory transport and Kafka (Tansu).
A redelivered message is skipped and settled; a message without an id is
poison (dead-lettered, settled) and the consumer keeps going; a crash
between the inbox commit and the offset commit redelivers, and the
redelivery is skipped."""

from __future__ import annotations

import json
from typing import Any

import anyio
import lagom
import pytest
from broker_helpers import (
    committed,
    consumer_config,
    create_topic,
    plain_consume,
    plain_produce,
    running,
)

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxTransaction

from .inbox_helpers import Harness, Paid, paid

pytestmark = pytest.mark.anyio

Event = anycqrs.NotificationEvent[Paid]


class Calls:
    def __init__(self, harness: Harness, expected: int) -> None:
        self.harness = harness
        self.ids: list[int] = []
        self.expected = expected
        self.done = anyio.Event()


class Effect(anycqrs.EventHandler[Event]):
    def __init__(self, tx: InboxTransaction, calls: Calls) -> None:
        self.tx = tx
        self.calls = calls

    async def handle(self, event: Event) -> None:
        await self.tx.run(self.calls.harness.write, "Effect", event.payload.order_id)
        self.calls.ids.append(event.payload.order_id)
        if len(self.calls.ids) >= self.calls.expected:
            self.calls.done.set()


def guarded(db: Harness, calls: Calls) -> anycqrs.EventMediator:
    container = lagom.Container()
    container[Calls] = calls
    return bootstrap(
        di_container=container,
        events_mapper=lambda events: events.bind(Event, Effect),
        inbox=db.store(),
    )


@pytest.fixture(params=["per-call", "batch"])
def sqlite_db(request: pytest.FixtureRequest, tmp_path: Any, unique: str) -> Harness:
    """A SQLite inbox harness; ``batch``: its stores batch (a transaction per chunk)."""
    from .inbox_helpers import SqliteHarness

    harness = SqliteHarness(tmp_path / "app.db", unique)
    harness.batch = request.param == "batch"
    return harness


class TestInMemory:
    """The in-memory transport feeding a guarded mediator."""

    async def test_redelivery_skipped_and_no_id_is_poison(self, sqlite_db: Harness) -> None:
        calls = Calls(sqlite_db, expected=2)
        mediator = guarded(sqlite_db, calls)
        assert mediator.requires_event_ids
        transport = InMemoryTransport()
        first = paid(1)
        transport.put_event(first)
        transport.put(json.dumps({"payload": {"order_id": 2}}).encode(), event_name="Paid")
        transport.put(b'{"payload": {"order_id": 3}, "event_id": "nope"}', event_name="Paid")
        transport.put_event(first)  # a redelivery
        transport.put_event(paid(4))
        transport.close()
        with anyio.fail_after(30):
            await consume(mediator, transport)
        assert calls.ids == [1, 4]
        assert sqlite_db.effects() == [("Effect", 1), ("Effect", 4)]
        assert len(transport.settled) == 5
        dead = transport.dead_letters
        assert [d.record.offset for d in dead] == [1, 2]
        assert all(d.attempts == 0 for d in dead)
        assert "no event_id" in str(dead[0].error)

    async def test_without_inbox_a_message_without_id_is_handled(self) -> None:
        seen: list[int] = []

        class Plain(anycqrs.EventHandler[Event]):
            async def handle(self, event: Event) -> None:
                seen.append(event.payload.order_id)

        mediator = bootstrap(events_mapper=lambda events: events.bind(Event, Plain))
        assert not mediator.requires_event_ids
        transport = InMemoryTransport()
        transport.put(json.dumps({"payload": {"order_id": 2}}).encode(), event_name="Paid")
        transport.close()
        with anyio.fail_after(30):
            await consume(mediator, transport)
        assert seen == [2]


class TestKafka:
    """A Tansu broker, a consumer group, offsets."""

    async def test_crash_between_commit_and_offset_commit(
        self, kafka_bootstrap: str, unique: str, sqlite_db: Harness
    ) -> None:
        topic, dlt, group = f"inbox-{unique}", f"inbox-{unique}.dlt", f"g-{unique}"
        await create_topic(kafka_bootstrap, topic, partitions=2)
        events = [paid(i, key=f"k{i % 3}", topic=topic) for i in range(10)]
        async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap}) as broker:
            await broker.send_many([Message.from_event(e) for e in events])
        await plain_produce(
            kafka_bootstrap,
            [
                (
                    topic,
                    json.dumps({"payload": {"order_id": 99}}).encode(),
                    b"k0",
                    [("event_name", b"Paid")],
                )
            ],
        )
        # A consumer handled (and committed in the inbox) the first four, then
        # died before committing their offsets: the same state, reached directly.
        crashed = Calls(sqlite_db, expected=4)
        before = guarded(sqlite_db, crashed)
        for event in events[:4]:
            await before.send(event)
        calls = Calls(sqlite_db, expected=6)
        consumer = KafkaEventConsumer(
            consumer_config(kafka_bootstrap, group),
            [topic],
            guarded(sqlite_db, calls),
            dead_letter_topic=dlt,
            max_concurrency=4,
        )
        async with running(consumer):
            with anyio.fail_after(60):
                await calls.done.wait()
            dead = await plain_consume(kafka_bootstrap, dlt, 1)
            with anyio.fail_after(60):
                while (
                    sum(
                        max(0, offset)  # negative: nothing committed on that partition
                        for offset in await committed(kafka_bootstrap, group, topic, partitions=2)
                    )
                    < 11
                ):
                    await anyio.sleep(0.05)
        assert sorted(calls.ids) == list(range(4, 10))  # the redelivered four: skipped
        assert sorted(v for _, v in sqlite_db.effects()) == list(range(10))
        assert [m.key() for m in dead] == [b"k0"]
