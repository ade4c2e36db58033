from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pika
import pytest

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.rabbitmq import (
    ConsumerRetryPolicy,
    RabbitMQEventConsumer,
    RabbitMQMessageBroker,
)
from anycqrs.errors import BrokerDeliveryError, BrokerError, MessageHandlingError
from anycqrs.events import EventMediator

from .broker_helpers import Recorder, paid, running

pytestmark = pytest.mark.anyio


class Names:
    def __init__(self, unique: str) -> None:
        self.exchange = f"anycqrs-test-{unique}"
        self.queue = f"anycqrs-test-q-{unique}"
        self.dlx = f"anycqrs-test-dlx-{unique}"
        self.dlq = f"anycqrs-test-dlq-{unique}"


def _admin(url: str, job: Any) -> Any:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return job(connection.channel())
    finally:
        connection.close()


@pytest.fixture
def names(rabbitmq_url: str, unique: str) -> Iterator[Names]:
    names = Names(unique)
    yield names

    def cleanup(channel: Any) -> None:
        for queue in (names.queue, names.dlq):
            channel.queue_delete(queue)
        for exchange in (names.exchange, names.dlx):
            channel.exchange_delete(exchange)

    _admin(rabbitmq_url, cleanup)


def _declare_dlq(url: str, names: Names) -> None:
    def declare(channel: Any) -> None:
        channel.exchange_declare(names.dlx, "topic", durable=True)
        channel.queue_declare(names.dlq, durable=True)
        channel.queue_bind(names.dlq, names.dlx, "#")

    _admin(url, declare)


def _drain(url: str, queue: str) -> list[tuple[Any, bytes]]:
    def get_all(channel: Any) -> list[tuple[Any, bytes]]:
        got = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return got
            got.append((properties, body))

    return _admin(url, get_all)


def _publish_raw(
    url: str, exchange: str, key: str, bodies: list[tuple[bytes, dict[str, Any]]]
) -> None:
    def publish(channel: Any) -> None:
        for body, headers in bodies:
            channel.basic_publish(exchange, key, body, pika.BasicProperties(headers=headers))

    _admin(url, publish)


async def test_round_trip_through_an_exchange(
    rabbitmq_url: str, names: Names, mediator: EventMediator, recorder: Recorder
) -> None:
    consumer = RabbitMQEventConsumer(
        rabbitmq_url, names.queue, mediator, bindings=[(names.exchange, "orders.#")], prefetch=8
    )
    events = [paid(i, "orders.paid", key=f"k{i % 3}", headers={"tenant": "t1"}) for i in range(30)]
    async with running(consumer):
        async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
            await broker.send_message(Message.from_event(events[0]))
            await broker.send_many([Message.from_event(e) for e in events[1:]])
            await broker.send_many([])
        await recorder.wait_count(30)
    assert sorted(recorder.ids()) == list(range(30))
    for k in range(3):
        ids = [e.payload.order_id for e in recorder.events if e.key == f"k{k}"]
        assert ids == sorted(ids)
    assert {e.event_id for e in recorder.events} == {e.event_id for e in events}
    assert recorder.events[0].headers["tenant"] == "t1"
    # everything was acked: nothing is left in the queue
    assert await anyio.to_thread.run_sync(_drain, rabbitmq_url, names.queue) == []


async def test_wire_format_read_by_plain_pika(rabbitmq_url: str, names: Names) -> None:
    def declare(channel: Any) -> None:
        channel.queue_declare(names.queue, durable=True)

    await anyio.to_thread.run_sync(_admin, rabbitmq_url, declare)
    event = paid(5, names.queue, key="k5", headers={"tenant": "t"})
    async with RabbitMQMessageBroker(rabbitmq_url) as broker:  # default exchange
        await broker.send_message(Message.from_event(event))
    ((properties, body),) = await anyio.to_thread.run_sync(_drain, rabbitmq_url, names.queue)
    assert json.loads(body) == anycqrs.to_dict(event)
    assert properties.delivery_mode == 2
    assert properties.message_id == str(event.event_id)
    assert properties.type == "OrderPaid"
    assert properties.headers == {"event_name": "OrderPaid", "key": "k5", "tenant": "t"}


async def test_unroutable_message_is_reported(rabbitmq_url: str, names: Names) -> None:
    async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
        with pytest.raises(BrokerDeliveryError, match="unroutable"):
            await broker.send_message(Message.from_event(paid(1, "nobody.listens")))


async def test_not_connected_errors(rabbitmq_url: str) -> None:
    broker = RabbitMQMessageBroker(rabbitmq_url)
    with pytest.raises(BrokerError, match="not connected"):
        await broker.send_message(Message.from_event(paid(1, "x")))
    with pytest.raises(BrokerError, match="Cannot connect"):
        async with RabbitMQMessageBroker("amqp://guest:guest@127.0.0.1:1/%2F"):
            pass


async def test_retry_dead_letter_and_poison(
    rabbitmq_url: str, names: Names, mediator: EventMediator, recorder: Recorder
) -> None:
    await anyio.to_thread.run_sync(_declare_dlq, rabbitmq_url, names)

    def behaviour(event: Any, calls: int) -> None:
        if event.payload.order_id == 1 and calls <= 2:
            raise ConnectionError("flaky")
        if event.payload.order_id == 2:
            raise ValueError("cursed")

    recorder.behaviour = behaviour
    consumer = RabbitMQEventConsumer(
        rabbitmq_url,
        names.queue,
        mediator,
        bindings=[(names.exchange, "#")],
        retry=ConsumerRetryPolicy(attempts=3, delay=0.01),
        dead_letter_exchange=names.dlx,
        prefetch=1,
    )
    async with running(consumer):
        async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
            await broker.send_many([Message.from_event(paid(i, "o")) for i in (1, 2)])
        await anyio.to_thread.run_sync(
            _publish_raw,
            rabbitmq_url,
            names.exchange,
            "o",
            [
                (b"{broken", {"event_name": "OrderPaid"}),
                (b'{"payload": {"order_id": 1}}', {"event_name": "Unknown"}),
                (json.dumps({"payload": {"order_id": 3}}).encode(), {"event_name": "OrderPaid"}),
            ],
        )
        await recorder.wait_for(lambda: recorder.ids() == [1, 3])
    dead = await anyio.to_thread.run_sync(_drain, rabbitmq_url, names.dlq)
    kinds = sorted(p.headers["anycqrs.error.type"] for p, _ in dead)
    assert kinds == ["DeserializationError", "UnknownEventName", "ValueError"]
    cursed = next(p for p, _ in dead if p.headers["anycqrs.error.type"] == "ValueError")
    assert cursed.headers["anycqrs.attempts"] == 3
    assert cursed.headers["anycqrs.original.queue"] == names.queue
    assert b"{broken" in [body for _, body in dead]
    assert await anyio.to_thread.run_sync(_drain, rabbitmq_url, names.queue) == []


async def test_failure_without_dlx_stops_and_leaves_the_message(
    rabbitmq_url: str, names: Names, mediator: EventMediator, recorder: Recorder
) -> None:
    def fail(_event: Any, _calls: int) -> None:
        raise RuntimeError("boom")

    recorder.behaviour = fail
    consumer = RabbitMQEventConsumer(
        rabbitmq_url,
        names.queue,
        mediator,
        bindings=[(names.exchange, "#")],
        retry=ConsumerRetryPolicy(attempts=2, delay=0.0),
    )

    def declare(channel: Any) -> None:
        channel.exchange_declare(names.exchange, "topic", durable=True)
        channel.queue_declare(names.queue, durable=True)
        channel.queue_bind(names.queue, names.exchange, "#")

    await anyio.to_thread.run_sync(_admin, rabbitmq_url, declare)
    async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
        await broker.send_message(Message.from_event(paid(1, "o")))
    with anyio.fail_after(30), pytest.raises(MessageHandlingError, match="#1"):
        await consumer.run()
    (left,) = await anyio.to_thread.run_sync(_drain, rabbitmq_url, names.queue)
    assert json.loads(left[1])["payload"] == {"order_id": 1, "amount": 1.0}


async def test_cancel_acks_finished_and_returns_the_rest(
    rabbitmq_url: str, names: Names, mediator: EventMediator, recorder: Recorder
) -> None:
    blocked = anyio.Event()

    async def block_on_three(event: Any, _calls: int) -> None:
        if event.payload.order_id == 3:
            blocked.set()
            await anyio.sleep_forever()

    recorder.behaviour = block_on_three
    consumer = RabbitMQEventConsumer(
        rabbitmq_url, names.queue, mediator, bindings=[(names.exchange, "#")], prefetch=1
    )
    async with running(consumer):
        async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
            await broker.send_many([Message.from_event(paid(i, "o")) for i in range(6)])
        with anyio.fail_after(30):
            await blocked.wait()
    assert recorder.ids() == [0, 1, 2]
    left = await anyio.to_thread.run_sync(_drain, rabbitmq_url, names.queue)
    assert [json.loads(body)["payload"]["order_id"] for _, body in left] == [3, 4, 5]


def test_consumer_arguments(mediator: EventMediator) -> None:
    with pytest.raises(ValueError):
        RabbitMQEventConsumer("amqp://x", "q", mediator, prefetch=0)
