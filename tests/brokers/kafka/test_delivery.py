"""What a failed Kafka publish tells (issue 10, items 2 and 3): which
messages failed and which were delivered, and a publish stuck behind a full
local queue gives way to cancellation at once."""

from __future__ import annotations

import anyio
import pytest

from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaMessageBroker
from anycqrs.errors import BrokerDeliveryError

from ..broker_helpers import paid, plain_consume

pytestmark = pytest.mark.anyio

UNREACHABLE = {"bootstrap.servers": "127.0.0.1:1"}


@pytest.mark.parametrize("count", [3, 40])  # produced inline, and in a worker thread
async def test_failures_name_each_message_reported_by_the_broker(unique: str, count: int) -> None:
    """librdkafka drops the headers of failed messages: the ids come from
    each message's own delivery report."""
    messages = [Message.from_event(paid(i, f"ids-{unique}")) for i in range(count)]
    async with KafkaMessageBroker({**UNREACHABLE, "message.timeout.ms": 300}) as broker:
        with pytest.raises(BrokerDeliveryError) as info:
            await broker.send_many(messages)
    error = info.value
    assert [message_id for message_id, _ in error.failures] == [str(m.message_id) for m in messages]
    assert all("timed out" in reason for _, reason in error.failures)
    assert error.positions == tuple(range(count))
    assert error.delivered == 0
    assert error.undelivered(messages) == messages


async def test_a_caller_can_retry_exactly_the_failures(kafka_bootstrap: str, unique: str) -> None:
    topic = f"retry-{unique}"
    config = {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2000}
    big = Message(message_name="Big", topic=topic, payload={"blob": "x" * 5000})
    messages = [Message.from_event(paid(0, topic)), big, Message.from_event(paid(2, topic))]
    async with KafkaMessageBroker(config) as broker:
        with pytest.raises(BrokerDeliveryError) as info:
            await broker.send_many(messages)
    error = info.value
    assert error.positions == (1,)
    assert error.failures[0][0] == str(big.message_id)
    assert error.delivered == 2
    assert error.undelivered(messages) == [big]
    got = await plain_consume(kafka_bootstrap, topic, 2)
    assert len(got) == 2  # the two reported delivered are on the topic


@pytest.mark.parametrize(("count", "bad"), [(3, 1), (40, 17)])  # inline, worker thread
async def test_a_failure_reported_by_the_broker_names_its_own_record(
    kafka_bootstrap: str, unique: str, count: int, bad: int
) -> None:
    """The broker refuses one record amid delivered ones (an invalid topic
    name fails in its delivery report, not in `produce`): each record's
    callback is bound to its own position, so that one is named."""
    topic = f"mid-{unique}"
    refused = Message(message_name="Bad", topic="bad topic!", payload={"n": bad})
    messages = [Message.from_event(paid(i, topic)) for i in range(count)]
    messages[bad] = refused
    async with KafkaMessageBroker(
        {"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 5000}
    ) as broker:
        with pytest.raises(BrokerDeliveryError) as info:
            await broker.send_many(messages)
    error = info.value
    assert error.positions == (bad,)
    assert [message_id for message_id, _ in error.failures] == [str(refused.message_id)]
    assert "Invalid topic" in error.failures[0][1]
    assert error.delivered == count - 1


async def test_cancelling_a_publish_behind_a_full_local_queue_returns_at_once(
    unique: str,
) -> None:
    """The broker is unreachable and the local queue holds 5 records: the
    producing thread waits for room; cancellation must end that wait (it
    used to last until librdkafka's `message.timeout.ms`)."""
    config = {
        **UNREACHABLE,
        "queue.buffering.max.messages": 5,
        "message.timeout.ms": 30_000,
    }
    messages = [Message.from_event(paid(i, f"full-{unique}")) for i in range(100)]
    with anyio.fail_after(15):  # far below message.timeout.ms
        async with KafkaMessageBroker(config, flush_timeout=0.2) as broker:
            with anyio.move_on_after(0.5) as scope:
                await broker.send_many(messages)
            assert scope.cancelled_caught
            # the broker stays usable: a later publish is queued and times out normally
            with anyio.move_on_after(0.2):
                await broker.send_message(messages[0])
