"""Kafka broker stopped mid-stream and restarted (on a Tansu of our own, so
the shared one is untouched). Tansu's memory storage loses everything on a
restart, so the test checks what matters: the producer reports the outage
as an error, and both producer and consumer carry on once it is back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.errors import BrokerDeliveryError
from anycqrs.events import EventMediator

from .broker_helpers import Recorder, consumer_config, paid, running

pytestmark = pytest.mark.anyio

RECONNECT = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 300}


@pytest.fixture
def own_tansu(tansu: Any) -> Iterator[Any]:
    broker = type(tansu)(tansu.binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_broker_restart_mid_stream(
    own_tansu: Any, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    bootstrap = own_tansu.bootstrap
    topic, group = f"fault-{unique}", f"g-{unique}"
    producer_config = {"bootstrap.servers": bootstrap, "message.timeout.ms": 2000, **RECONNECT}
    config = consumer_config(bootstrap, group, **RECONNECT)
    async with KafkaMessageBroker(producer_config) as broker:
        async with running(KafkaEventConsumer(config, [topic], mediator)):
            first = [Message.from_event(paid(i, topic, key=str(i))) for i in range(5)]
            await broker.send_many(first)
            await recorder.wait_count(5)

            await anyio.to_thread.run_sync(own_tansu.stop)
            with pytest.raises(BrokerDeliveryError, match="not delivered"):
                await broker.send_message(Message.from_event(paid(99, topic)))

            await anyio.to_thread.run_sync(own_tansu.start)
            after = [Message.from_event(paid(i, topic, key=str(i))) for i in range(10, 15)]
            with anyio.fail_after(60):
                while True:  # the first sends may still race the reconnect
                    try:
                        await broker.send_many(after)
                        break
                    except BrokerDeliveryError:
                        continue
            await recorder.wait_for(lambda: set(range(10, 15)) <= set(recorder.ids()), 60)
    ids = recorder.ids()
    assert set(ids) >= set(range(5)) | set(range(10, 15))
    assert 99 not in ids  # reported as failed, never delivered
