"""Every broker takes a codec: RabbitMQ and Kafka, producer and consumer, with
python-cqrs's wire and protobuf, against the real services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import anyio
import anyio.to_thread
import lagom
import orjson
import pika
import pytest

from anycqrs import NotificationEvent
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer, RabbitMQMessageBroker
from anycqrs.codecs import MessageCodec, PythonCqrsCodec
from anycqrs.events import EventHandler, EventMap, EventMediator

from .python_cqrs_models import Line, OrderPaid
from .test_protobuf import CODEC as PROTOBUF
from .test_protobuf import Line as ProtoLine
from .test_protobuf import OrderPaid as ProtoOrderPaid

pytestmark = pytest.mark.anyio

GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200, "auto.offset.reset": "earliest"}


class Record(EventHandler[NotificationEvent[Any]]):
    got: list[NotificationEvent[Any]] = []
    want = 0
    arrived = anyio.Event()

    async def handle(self, event: NotificationEvent[Any]) -> None:
        Record.got.append(event)
        if len(Record.got) == Record.want:
            Record.arrived.set()


def mediator(case: str) -> EventMediator:
    Record.got, Record.want, Record.arrived = [], 3, anyio.Event()
    events = EventMap()
    payload = OrderPaid if case == "python-cqrs" else ProtoOrderPaid
    events.bind(NotificationEvent[payload], Record)  # type: ignore[valid-type]
    return EventMediator(events, container=lagom.Container())


def python_cqrs_events(topic: str) -> list[NotificationEvent[Any]]:
    return [
        NotificationEvent(
            payload=OrderPaid(
                order_id=i,
                total_amount=2.0,
                paid_by=UUID(int=i),
                extra_info={"gift_wrap": i},
                lines=[Line("S", i)],
            ),
            topic=topic,
            key=f"k{i}",
            event_name="OrderPaid",
        )
        for i in range(3)
    ]


def protobuf_events(topic: str) -> list[NotificationEvent[Any]]:
    return [
        NotificationEvent(
            payload=ProtoOrderPaid(i, 0.5, UUID(int=i), [ProtoLine("p", 2**40)], None, {"a": i}),
            topic=topic,
            key=f"k{i}",
            headers={"tenant": "t1"},
        )
        for i in range(3)
    ]


CASES = {"python-cqrs": (PythonCqrsCodec, python_cqrs_events), "protobuf": (None, protobuf_events)}


def codec_for(name: str, events: EventMediator) -> MessageCodec:
    return PythonCqrsCodec(events.event_map) if name == "python-cqrs" else PROTOBUF


def _same(got: list[NotificationEvent[Any]], sent: list[NotificationEvent[Any]]) -> None:
    by_id = {e.event_id: e for e in got}
    assert len(by_id) == len(sent)
    for event in sent:
        again = by_id[event.event_id]
        assert again.payload == event.payload and again.key == event.key
        assert again.event_timestamp == event.event_timestamp


@pytest.fixture
def rabbit_names(rabbitmq_url: str, unique: str) -> Iterator[tuple[str, str]]:
    exchange, queue = f"anycqrs-test-codec-{unique}", f"anycqrs-test-codec-q-{unique}"
    yield exchange, queue
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        connection.close()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_rabbitmq(rabbitmq_url: str, rabbit_names: tuple[str, str], case: str) -> None:
    exchange, queue = rabbit_names
    sink = mediator(case)
    codec = codec_for(case, sink)
    sent = CASES[case][1]("orders.paid")
    consumer = RabbitMQEventConsumer(
        rabbitmq_url, queue, sink, bindings=[(exchange, "orders.#")], codec=codec
    )
    async with anyio.create_task_group() as group:
        with anyio.fail_after(60):
            await group.start(consumer.run)
            async with RabbitMQMessageBroker(
                rabbitmq_url, exchange=exchange, codec=codec
            ) as broker:
                await broker.send_many([Message.from_event(e) for e in sent])
            await Record.arrived.wait()
        group.cancel_scope.cancel()
    _same(Record.got, sent)
    if case == "protobuf":
        assert Record.got[0].headers["tenant"] == "t1"


async def test_rabbitmq_properties(rabbitmq_url: str, rabbit_names: tuple[str, str]) -> None:
    exchange, queue = rabbit_names

    def declare_and_get(channel: Any, get: bool) -> Any:
        if not get:
            channel.exchange_declare(exchange, "topic", durable=True)
            channel.queue_declare(queue, durable=True)
            channel.queue_bind(queue, exchange, "#")
            return None
        for _ in range(100):
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return properties, body
        return None

    def admin(get: bool) -> Any:
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
        try:
            return declare_and_get(connection.channel(), get)
        finally:
            connection.close()

    await anyio.to_thread.run_sync(admin, False)
    (event,) = python_cqrs_events("orders.paid")[:1]
    async with RabbitMQMessageBroker(
        rabbitmq_url, exchange=exchange, codec=PythonCqrsCodec()
    ) as broker:
        await broker.send_message(Message.from_event(event))
    with anyio.fail_after(30):
        properties, body = await anyio.to_thread.run_sync(admin, True)
    assert "event_name" not in (properties.headers or {})
    assert properties.content_type == "application/json"
    assert orjson.loads(body)["eventName"] == "OrderPaid"


@pytest.mark.parametrize("case", sorted(CASES))
async def test_kafka(kafka_bootstrap: str, unique: str, case: str) -> None:
    topic = f"codec-{case}-{unique}"
    sink = mediator(case)
    codec = codec_for(case, sink)
    sent = CASES[case][1](topic)
    async with KafkaMessageBroker({"bootstrap.servers": kafka_bootstrap}, codec=codec) as broker:
        await broker.send_many([Message.from_event(e) for e in sent])
    consumer = KafkaEventConsumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{unique}", **GROUP},
        [topic],
        sink,
        codec=codec,
    )
    async with anyio.create_task_group() as group:
        with anyio.fail_after(60):
            await group.start(consumer.run)
            await Record.arrived.wait()
        group.cancel_scope.cancel()
    _same(Record.got, sent)
