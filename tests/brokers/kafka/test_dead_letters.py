"""Bad input never crashes a `KafkaEventConsumer` (issue 10, item 1): a record
the dead-letter topic refuses whole is dead-lettered truncated, and a
dead-letter topic that stays unreachable stops `run` with one clear error."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.to_thread
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from anycqrs import RetryPolicy
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, encode_message
from anycqrs.errors import DeadLetterError
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

MIB = 1024 * 1024
TICK = [("event_name", b"OrderPaid")]


def _big_topic_and_records(bootstrap: str, topic: str, records: list[Any]) -> None:
    """A topic taking records up to 4 MiB, and `records` produced to it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=1, config={"max.message.bytes": str(4 * MIB)})
    for future in admin.create_topics([new]).values():
        future.result(15)
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4 * MIB})
    errors: list[Any] = []
    for record_topic, value, key, headers in records:
        producer.produce(
            record_topic,
            value,
            key,
            headers=headers,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
    assert producer.flush(30) == 0
    assert not errors, errors


async def test_a_dead_letter_too_large_for_the_topic_is_written_truncated(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    topic, dlt, group = f"big-{unique}", f"big-{unique}.dlt", f"g-{unique}"
    await create_topic(kafka_bootstrap, dlt, partitions=1)
    oversize = b"x" * (MIB + 1)  # over the DLQ producer's 1,000,000-byte default
    near_limit = b"y" * 999_700  # under it, but not with the anycqrs.* headers
    records = [
        encode_message(Message.from_event(paid(1, topic, key="k1"))),
        (topic, oversize, b"over", [*TICK, ("trace", b"t-1")]),
        (topic, near_limit, b"near", TICK),
        encode_message(Message.from_event(paid(2, topic, key="k2"))),
    ]
    await anyio.to_thread.run_sync(_big_topic_and_records, kafka_bootstrap, topic, records)
    consumer = KafkaEventConsumer(
        consumer_config(kafka_bootstrap, group),
        [topic],
        mediator,
        dead_letter_topic=dlt,
        dead_letter_retry=RetryPolicy(attempts=2, delay=0.0),
    )
    async with running(consumer):
        await recorder.wait_count(2)
        dead = await plain_consume(kafka_bootstrap, dlt, 2)
        with anyio.fail_after(30):
            while await committed(kafka_bootstrap, group, topic) != [4]:
                await anyio.sleep(0.2)
    assert sorted(recorder.ids()) == [1, 2]  # different keys: any order
    by_key = {m.key(): m for m in dead}
    assert set(by_key) == {b"over", b"near"}
    for key, value, offset in ((b"over", oversize, b"1"), (b"near", near_limit, b"2")):
        letter = by_key[key]
        headers = dict(letter.headers())
        assert headers["anycqrs.truncated"] == b"value"
        assert headers["anycqrs.original.size"] == str(len(value)).encode()
        assert b"MSG_SIZE_TOO_LARGE" in headers["anycqrs.rejected"]
        assert headers["anycqrs.error.type"] == b"DeserializationError"
        assert headers["anycqrs.original.topic"] == topic.encode()
        assert headers["anycqrs.original.partition"] == b"0"
        assert headers["anycqrs.original.offset"] == offset
        assert headers["event_name"] == b"OrderPaid"
        assert value.startswith(letter.value()) and 0 < len(letter.value()) < len(value)
    assert dict(by_key[b"over"].headers())["trace"] == b"t-1"  # small headers kept


async def test_an_unreachable_dead_letter_topic_stops_run_with_one_clear_error(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    """Several lanes dead-letter at once; `run` raises `DeadLetterError`
    itself (no exception group) and leaves the poison uncommitted."""
    topic, group = f"nodlq-{unique}", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    poison = [(topic, json.dumps([i]).encode(), f"k{i}".encode(), None) for i in range(8)]
    await plain_produce(kafka_bootstrap, poison)
    consumer = KafkaEventConsumer(
        consumer_config(kafka_bootstrap, group),
        [topic],
        mediator,
        max_concurrency=4,
        dead_letter_topic=f"nodlq-{unique}.dlt",
        dead_letter_config={"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 300},
        dead_letter_retry=RetryPolicy(attempts=2, delay=0.0),
    )
    with anyio.fail_after(60), pytest.raises(DeadLetterError) as info:
        await consumer.run()
    assert f"{topic}[0]@" in str(info.value)
    assert "Message timed out" in str(info.value)
    assert info.value.location.startswith(f"{topic}[0]@")
    assert (await committed(kafka_bootstrap, group, topic))[0] < 8
