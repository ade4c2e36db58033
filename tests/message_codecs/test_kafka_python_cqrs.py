"""Wire compatibility with python-cqrs 5.3 over a real (Tansu) Kafka broker.

python-cqrs's own mediator, event emitter and `KafkaMessageBroker` produce
(its aiokafka adapter is not installed: a confluent-kafka producer implements
its `KafkaProducer` protocol and puts the bytes python-cqrs hands it on the
wire unchanged); anycqrs's `KafkaEventConsumer` reads them. The other way,
anycqrs's `KafkaMessageBroker` writes and python-cqrs's `JsonDeserializer`
reads. python-cqrs runs on asyncio: it gets an event loop of its own in a
worker thread, so the test runs under both anyio backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import anyio
import anyio.to_thread
import cqrs
import di
import lagom
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from cqrs.bootstrap.requests import bootstrap as cqrs_bootstrap
from cqrs.deserializers import JsonDeserializer
from cqrs.message_brokers.kafka import KafkaMessageBroker as CqrsKafkaBroker

from anycqrs import NotificationEvent
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.codecs import PythonCqrsCodec
from anycqrs.events import EventHandler, EventMap, EventMediator

from .python_cqrs_models import CqrsLine, CqrsOrderPaid, CqrsOrderPaidEvent, Line, OrderPaid

pytestmark = pytest.mark.anyio

GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200, "auto.offset.reset": "earliest"}


class ConfluentProducer:
    """python-cqrs's `KafkaProducer` protocol on confluent-kafka."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap})

    async def produce(
        self, topic: str, message: Any, headers: dict[str, str] | None = None
    ) -> None:
        errors: list[Any] = []
        self._producer.produce(
            topic,
            message,
            headers=list(headers.items()) if headers else None,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
        assert self._producer.flush(30) == 0 and not errors, errors


class PayOrder(cqrs.Request):
    order_id: int


class PayOrderHandler(cqrs.RequestHandler[PayOrder, None]):
    """A python-cqrs handler that emits a notification event."""

    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._events

    async def handle(self, request: PayOrder) -> None:
        payload = CqrsOrderPaid(
            order_id=request.order_id,
            total_amount=9.5,
            paid_by=UUID(int=request.order_id),
            extra_info={"gift_wrap": 1},
            lines=[CqrsLine(sku_code="A-1", unit_count=2)],
        )
        self._events.append(CqrsOrderPaidEvent(topic=TOPIC[0], payload=payload))


TOPIC: list[str] = [""]  # the handler's topic, set per test (python-cqrs resolves the class)


def run_python_cqrs_service(bootstrap: str, order_ids: list[int]) -> None:
    """The python-cqrs service: its own bootstrap, mediator and Kafka broker."""

    async def main() -> None:
        mediator = cqrs_bootstrap(
            di_container=di.Container(),
            message_broker=CqrsKafkaBroker(ConfluentProducer(bootstrap)),
            commands_mapper=lambda m: m.bind(PayOrder, PayOrderHandler),
        )
        for order_id in order_ids:
            await mediator.send(PayOrder(order_id=order_id))

    asyncio.run(main())


class Record(EventHandler[NotificationEvent[OrderPaid]]):
    got: list[NotificationEvent[OrderPaid]] = []
    arrived = anyio.Event()

    async def handle(self, event: NotificationEvent[OrderPaid]) -> None:
        Record.got.append(event)
        if len(Record.got) == 3:
            Record.arrived.set()


@pytest.fixture
async def anycqrs_service() -> AsyncIterator[EventMediator]:
    Record.got, Record.arrived = [], anyio.Event()
    events = EventMap()
    events.bind(NotificationEvent[OrderPaid], Record)
    yield EventMediator(events, container=lagom.Container())


async def test_anycqrs_consumes_what_python_cqrs_produces(
    kafka_bootstrap: str, unique: str, anycqrs_service: EventMediator
) -> None:
    TOPIC[0] = topic = f"pycqrs-{unique}"
    await anyio.to_thread.run_sync(run_python_cqrs_service, kafka_bootstrap, [1, 2, 3])
    consumer = KafkaEventConsumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{unique}", **GROUP},
        [topic],
        anycqrs_service,
        codec=PythonCqrsCodec(),
    )
    async with anyio.create_task_group() as group:
        with anyio.fail_after(60):
            await group.start(consumer.run)
            await Record.arrived.wait()
        group.cancel_scope.cancel()
    assert [e.payload.order_id for e in Record.got] == [1, 2, 3]
    first = Record.got[0]
    assert first.event_name == "OrderPaid" and first.topic == topic
    assert first.payload.lines == [Line(sku_code="A-1", unit_count=2)]
    assert first.payload.extra_info == {"gift_wrap": 1}
    assert first.payload.paid_by == UUID(int=1)


def _read(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"plain-{topic}", **GROUP})
    got: list[Any] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        for _ in range(300):
            got += [m for m in consumer.consume(10, 0.2) if m.error() is None]
            if len(got) >= count:
                break
    finally:
        consumer.close()
    return got


async def test_python_cqrs_reads_what_anycqrs_produces(kafka_bootstrap: str, unique: str) -> None:
    topic = f"anycqrs-{unique}"
    events = EventMap()
    events.bind(NotificationEvent[OrderPaid], Record)
    sent = [
        NotificationEvent(
            payload=OrderPaid(
                order_id=i,
                total_amount=1.5,
                paid_by=UUID(int=i),
                extra_info={"gift_wrap": i},
                lines=[Line("B-2", i)],
            ),
            topic=topic,
            key=f"order-{i}",
        )
        for i in range(3)
    ]
    async with KafkaMessageBroker(
        {"bootstrap.servers": kafka_bootstrap}, codec=PythonCqrsCodec(events)
    ) as broker:
        await broker.send_many([Message.from_event(e) for e in sent])
    with anyio.fail_after(90):
        records = await anyio.to_thread.run_sync(_read, kafka_bootstrap, topic, 3)
    assert len(records) == 3
    assert all(not r.headers() for r in records)  # python-cqrs's wire: no headers
    records.sort(key=lambda r: r.key())
    assert [r.key() for r in records] == [b"order-0", b"order-1", b"order-2"]
    read = JsonDeserializer(CqrsOrderPaidEvent)
    for event, record in zip(sent, records, strict=True):
        theirs = read(record.value())
        assert isinstance(theirs, CqrsOrderPaidEvent), theirs
        assert theirs.event_id == event.event_id and theirs.topic == topic
        assert theirs.payload["orderId"] == event.payload.order_id
        assert theirs.payload["extraInfo"] == {"gift_wrap": event.payload.order_id}
        assert theirs.payload["lines"] == [{"skuCode": "B-2", "unitCount": event.payload.order_id}]
