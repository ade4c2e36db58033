"""`KafkaMessageBroker` against a real (Tansu) broker: delivery, order, backpressure, errors."""

from __future__ import annotations

import json

import anyio
import pytest

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaMessageBroker
from anycqrs.errors import BrokerDeliveryError, BrokerError
from anycqrs.serialization import from_json

from ..broker_helpers import OrderPaid, paid, plain_consume

pytestmark = pytest.mark.anyio


async def test_send_message_wire_format_read_by_plain_consumer(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"prod-{unique}"
    event = paid(7, topic, key="order-7", headers={"tenant": "acme", "event_name": "spoof"})
    async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap}) as broker:
        await broker.send_message(Message.from_event(event))
    (msg,) = await plain_consume(kafka_bootstrap, topic, 1)
    assert msg.key() == b"order-7"
    assert json.loads(msg.value()) == anycqrs.to_dict(event)
    headers = dict(msg.headers())
    assert headers["event_name"] == b"OrderPaid"
    assert headers["message_id"] == str(event.event_id).encode()
    assert headers["tenant"] == b"acme"
    assert [name for name, _ in msg.headers()].count("event_name") == 1
    again = from_json(anycqrs.NotificationEvent[OrderPaid], msg.value())
    assert again == event


async def test_send_many_keeps_per_key_order(kafka_bootstrap: str, unique: str) -> None:
    topic = f"many-{unique}"
    events = [paid(i, topic, key=f"k{i % 3}") for i in range(300)]
    async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap, "linger.ms": 2}) as broker:
        await broker.send_many(Message.from_event(e) for e in events[:10])  # an iterator
        await broker.send_many([Message.from_event(e) for e in events[10:]])
    got = await plain_consume(kafka_bootstrap, topic, 300)
    assert len(got) == 300
    for key in ("k0", "k1", "k2"):
        ids = [json.loads(m.value())["payload"]["order_id"] for m in got if m.key() == key.encode()]
        assert ids == sorted(ids) and len(ids) == 100


async def test_send_many_does_not_wait_out_linger(kafka_bootstrap: str, unique: str) -> None:
    """A whole batch is queued at once, so ``send_many`` sends it without
    waiting for ``linger.ms`` to collect more (here far longer than the
    deadline)."""
    topic = f"linger-{unique}"
    config = {"bootstrap.servers": kafka_bootstrap, "linger.ms": 60_000}
    async with KafkaMessageBroker(config) as broker:
        with anyio.fail_after(20):
            await broker.send_many([Message.from_event(paid(i, topic)) for i in range(200)])
    got = await plain_consume(kafka_bootstrap, topic, 200)
    assert sorted(json.loads(m.value())["payload"]["order_id"] for m in got) == list(range(200))


async def test_cancelled_send_many_returns_while_delivery_hangs(unique: str) -> None:
    """A large batch flushes in a worker thread; cancelling the caller ends
    that wait at once even though the broker never answers."""
    config = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 60_000}
    messages = [Message.from_event(paid(i, f"t-{unique}")) for i in range(500)]
    with anyio.fail_after(15):
        async with KafkaMessageBroker(config, flush_timeout=0.2) as broker:
            with anyio.move_on_after(0.5) as scope:
                await broker.send_many(messages)
    assert scope.cancelled_caught


async def test_full_local_queue_is_backpressure_not_loss(kafka_bootstrap: str, unique: str) -> None:
    topic = f"bp-{unique}"
    config = {"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": 5}
    async with KafkaMessageBroker(config) as broker:
        await broker.send_many([Message.from_event(paid(i, topic)) for i in range(20)])
        await broker.send_many([Message.from_event(paid(i, topic)) for i in range(20, 200)])
    got = await plain_consume(kafka_bootstrap, topic, 200)
    assert sorted(json.loads(m.value())["payload"]["order_id"] for m in got) == list(range(200))


async def test_rejected_message_raises_clear_error(kafka_bootstrap: str, unique: str) -> None:
    config = {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2000}
    good = Message.from_event(paid(1, f"ok-{unique}"))
    big = Message(message_name="Big", topic=f"ok-{unique}", payload={"blob": "x" * 5000})
    async with KafkaMessageBroker(config) as broker:
        with pytest.raises(BrokerDeliveryError) as info:
            await broker.send_many([good, big])
        assert info.value.delivered == 1
        assert info.value.failures[0][0] == str(big.message_id)
        assert "KafkaMessageBroker" in str(info.value)
        await broker.send_message(good)  # still usable


async def test_broker_unreachable_times_out_with_error(unique: str) -> None:
    config = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 500}
    async with KafkaMessageBroker(config) as broker:
        with pytest.raises(BrokerDeliveryError, match="not delivered"):
            await broker.send_message(Message.from_event(paid(1, f"x-{unique}")))


async def test_not_started_and_double_start(kafka_bootstrap: str) -> None:
    broker = KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap})
    with pytest.raises(BrokerError, match="async with"):
        await broker.send_message(Message.from_event(paid(1, "t")))
    await broker.send_many([])  # nothing to do, no error
    async with broker:
        with pytest.raises(BrokerError, match="already started"):
            await broker.__aenter__()
    await broker.__aexit__(None, None, None)  # second exit is a no-op


async def test_invalid_config_is_broker_error() -> None:
    with pytest.raises(BrokerError, match="Cannot create"):
        async with KafkaMessageBroker({"no.such.setting": 1}):
            pass


async def test_exit_flushes_pending_sends_under_cancellation(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"flush-{unique}"
    async with KafkaMessageBroker(
        {"bootstrap.servers": kafka_bootstrap, "linger.ms": 200}
    ) as broker:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await broker.send_message(Message.from_event(paid(1, topic)))
        assert scope.cancelled_caught
    # the message was queued before the cancellation hit the wait; exit flushed it
    got = await plain_consume(kafka_bootstrap, topic, 1, timeout=15)
    assert len(got) == 1
