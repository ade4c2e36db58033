"""`KafkaEventConsumer` against a real (Tansu) broker: what is Kafka's own —
wire interop, partitions, offset commits, the dead-letter topic, rebalances.
The lanes' contract (retries, poison, order, stop) is tested without a broker
in tests/consumers."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

import anycqrs
from anycqrs import RetryPolicy
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.errors import BrokerError, MessageHandlingError
from anycqrs.events import EventMediator

from ..broker_helpers import (
    Recorder,
    committed,
    consumer_config,
    create_topic,
    paid,
    plain_consume,
    plain_produce,
    running,
)

pytestmark = pytest.mark.anyio

NO_WAIT = RetryPolicy(attempts=3, delay=0.0)
"""Retries without backoff delays (backoff itself is tested on a fake sleep)."""


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


async def test_round_trip_across_partitions_and_plain_records(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    topic, group = f"rt-{unique}", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=3)
    await plain_produce(
        kafka_bootstrap,
        [
            # minimal: payload only, name from the header
            (topic, _json({"payload": {"order_id": 1001}}), b"p1", [("event_name", b"OrderPaid")]),
            # no header: the JSON's event_name field routes it
            (topic, _json({"payload": {"order_id": 1002}, "event_name": "OrderPaid"}), b"x", None),
            # a payload class with __event_name__
            (topic, _json({"payload": {"order_id": 3}}), b"y", [("event_name", b"orders.shipped")]),
        ],
    )
    events = [paid(i, topic, key=f"k{i % 5}") for i in range(200)]

    async def jitter(event: anycqrs.NotificationEvent[Any], _calls: int) -> None:
        if event.payload.order_id % 7 == 0:
            await anyio.sleep(0.001)

    recorder.behaviour = jitter
    async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap}) as broker:
        await broker.send_many([Message.from_event(e) for e in events])
    consumer = KafkaEventConsumer(
        consumer_config(kafka_bootstrap, group), [topic], mediator, max_concurrency=4
    )
    assert consumer.topics == [topic]

    # At-least-once: a group session that times out on a starved machine redelivers
    # what was not committed yet, so the events are compared by their first delivery.
    def firsts() -> list[anycqrs.NotificationEvent[Any]]:
        seen: dict[tuple[str, int], anycqrs.NotificationEvent[Any]] = {}
        for e in recorder.events:
            seen.setdefault((e.event_name, e.payload.order_id), e)
        return list(seen.values())

    async with running(consumer):
        await recorder.wait_for(lambda: len(firsts()) >= 203)
    delivered = firsts()
    paid_ids = sorted(e.payload.order_id for e in delivered if e.event_name == "OrderPaid")
    assert paid_ids == [*range(200), 1001, 1002]
    assert [e.payload.order_id for e in delivered if e.event_name == "orders.shipped"] == [3]
    for k in range(5):
        ids = [e.payload.order_id for e in delivered if e.key == f"k{k}"]
        assert ids == sorted(ids)
    first = next(e for e in delivered if e.payload.order_id == 1001)
    assert (first.key, first.topic) == ("p1", topic)  # filled from the Kafka message
    assert next(e for e in recorder.events if e.payload.order_id == 0) in events  # same id...
    assert sum(await committed(kafka_bootstrap, group, topic, partitions=3)) == 203


async def test_exhausted_and_poison_messages_go_to_the_dead_letter_topic(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    topic, dlt, group = f"dl-{unique}", f"dl-{unique}.dlt", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=1)

    def fail_two(event: Any, _calls: int) -> None:
        if event.payload.order_id == 2:
            raise ValueError("order 2 is cursed")
        if event.payload.order_id == 3:
            raise KeyError("not retried")

    recorder.behaviour = fail_two
    good = [paid(i, topic, key=f"k{i}") for i in (1, 2, 3)]
    async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap}) as broker:
        await broker.send_many([Message.from_event(e) for e in good])
    poison = [
        (topic, b"{not json", b"bad-json", [("event_name", b"OrderPaid")]),
        (topic, _json({"payload": {"order_id": 9}}), b"unknown", [("event_name", b"Nope")]),
        (topic, _json({"payload": {"id": "x"}}), b"shape", [("event_name", b"OrderPaid")]),
        (topic, None, b"empty", [("event_name", b"OrderPaid")]),
        (topic, _json([1, 2]), b"array", None),
        (topic, _json({"payload": {}}), b"nameless", None),
        (topic, _json({"payload": {"order_id": 4}}), b"k4", [("event_name", b"\xff")]),
        (topic, _json({"payload": {"order_id": 5}}), b"k5", [("event_name", b"OrderPaid")]),
    ]
    await plain_produce(kafka_bootstrap, poison)
    retry = RetryPolicy(attempts=2, delay=0.0, retry_on=(ValueError,))
    consumer = KafkaEventConsumer(
        consumer_config(kafka_bootstrap, group),
        [topic],
        mediator,
        retry=retry,
        dead_letter_topic=dlt,
        max_concurrency=1,
    )
    async with running(consumer):
        await recorder.wait_count(2)  # 1 and 5: the consumer kept going
        dead = await plain_consume(kafka_bootstrap, dlt, 9)
    assert recorder.ids() == [1, 5]
    assert await committed(kafka_bootstrap, group, topic) == [11]
    by_key = {m.key(): m for m in dead}
    assert set(by_key) == {
        b"k2",
        b"k3",
        b"bad-json",
        b"unknown",
        b"shape",
        b"empty",
        b"array",
        b"nameless",
        b"k4",
    }
    cursed = dict(by_key[b"k2"].headers())
    assert cursed["anycqrs.error.type"] == b"ValueError"
    assert b"cursed" in cursed["anycqrs.error.message"]
    assert cursed["anycqrs.attempts"] == b"2"
    assert cursed["anycqrs.original.topic"] == topic.encode()
    assert cursed["anycqrs.original.partition"] == b"0"
    assert cursed["anycqrs.original.offset"] == b"1"
    assert cursed["event_name"] == b"OrderPaid"  # original headers kept
    assert by_key[b"k2"].value() == json.dumps(anycqrs.to_dict(good[1])).replace(" ", "").encode()
    assert dict(by_key[b"k3"].headers())["anycqrs.attempts"] == b"1"  # KeyError: not retried
    assert dict(by_key[b"unknown"].headers())["anycqrs.error.type"] == b"UnknownEventName"
    assert dict(by_key[b"bad-json"].headers())["anycqrs.attempts"] == b"0"
    assert by_key[b"bad-json"].value() == b"{not json"
    assert by_key[b"empty"].value() is None


async def test_failure_without_dead_letter_topic_stops_uncommitted(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    """A poison message is skipped and committed; a failing one stops the
    consumer with its offset uncommitted."""
    topic, group = f"stop-{unique}", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    await plain_produce(kafka_bootstrap, [(topic, b"garbage", None, None)])

    def fail_on_two(event: Any, _calls: int) -> None:
        if event.payload.order_id == 2:
            raise RuntimeError("boom")

    recorder.behaviour = fail_on_two
    async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap}) as broker:
        await broker.send_many([Message.from_event(paid(i, topic)) for i in range(4)])
    consumer = KafkaEventConsumer(
        consumer_config(kafka_bootstrap, group),
        [topic],
        mediator,
        retry=NO_WAIT,
        max_concurrency=1,
    )
    with anyio.fail_after(30), pytest.raises(MessageHandlingError) as info:
        await consumer.run()
    assert info.value.attempts == 3
    assert info.value.location == f"{topic}[0]@3"
    assert recorder.ids() == [0, 1]
    assert await committed(kafka_bootstrap, group, topic) == [3]


async def test_cancel_commits_what_finished_and_the_next_run_resumes(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    topic, group = f"cancel-{unique}", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    blocked = anyio.Event()

    async def block_on_three(event: Any, _calls: int) -> None:
        if event.payload.order_id == 3:
            blocked.set()
            await anyio.sleep_forever()

    recorder.behaviour = block_on_three
    async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap}) as broker:
        await broker.send_many([Message.from_event(paid(i, topic)) for i in range(10)])
    consumer = KafkaEventConsumer(
        consumer_config(kafka_bootstrap, group), [topic], mediator, max_concurrency=1
    )
    async with running(consumer):
        with anyio.fail_after(30):
            await blocked.wait()
    assert recorder.ids() == [0, 1, 2]
    assert await committed(kafka_bootstrap, group, topic) == [3]
    # the same consumer runs again and resumes at the first unfinished message
    recorder.behaviour = None
    async with running(consumer):
        await recorder.wait_count(10)
    assert recorder.ids() == list(range(10))
    assert await committed(kafka_bootstrap, group, topic) == [10]


async def test_rebalance_between_two_members_loses_nothing(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    topic, group = f"reb-{unique}", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=2)
    config = consumer_config(kafka_bootstrap, group)
    async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap}) as broker:
        await broker.send_many([Message.from_event(paid(i, topic, key=str(i))) for i in range(50)])
        async with running(KafkaEventConsumer(config, [topic], mediator)):
            await recorder.wait_count(50)
            async with running(KafkaEventConsumer(config, [topic], mediator)):
                await broker.send_many(
                    [Message.from_event(paid(i, topic, key=str(i))) for i in range(50, 100)]
                )
                await recorder.wait_for(lambda: set(recorder.ids()) >= set(range(100)))
    assert set(recorder.ids()) == set(range(100))  # duplicates allowed (at-least-once)
    assert sum(await committed(kafka_bootstrap, group, topic, partitions=2)) == 100


def test_consumer_arguments_are_checked(mediator: EventMediator) -> None:
    config = {"bootstrap.servers": "x", "group.id": "g"}
    with pytest.raises(TypeError):
        KafkaEventConsumer(config, "topic", mediator)
    with pytest.raises(ValueError):
        KafkaEventConsumer(config, [], mediator)
    with pytest.raises(ValueError):
        KafkaEventConsumer(config, ["t"], mediator, max_concurrency=0)
    with pytest.raises(ValueError):
        KafkaEventConsumer(config, ["t"], mediator, batch_size=0)


def test_internal_methods_are_private(mediator: EventMediator) -> None:
    consumer = KafkaEventConsumer({"group.id": "g"}, ["t"], mediator)
    for name in ("stale", "done", "settle", "location", "dead_letter"):
        assert not hasattr(consumer, name), name


async def test_bad_consumer_config_is_broker_error(mediator: EventMediator) -> None:
    consumer = KafkaEventConsumer({"bootstrap.servers": "x"}, ["t"], mediator)  # no group.id
    with pytest.raises(BrokerError, match="Cannot start"):
        await consumer.run()
