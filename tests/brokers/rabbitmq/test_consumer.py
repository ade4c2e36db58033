"""`RabbitMQEventConsumer` against the real broker: ordering, acks, retries,
dead letters, poison messages, stopping, and running twice."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer, RabbitMQMessageBroker
from anycqrs.consumers import EventSink
from anycqrs.errors import MessageHandlingError
from anycqrs.events import EventMediator

from ..broker_helpers import Recorder, paid, running
from .rabbitmq_helpers import Names, declare_dlq, declare_queue, drain, publish_raw

pytestmark = pytest.mark.anyio


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
    assert await drain(rabbitmq_url, names.queue) == []


async def test_retry_dead_letter_and_poison(
    rabbitmq_url: str, names: Names, mediator: EventMediator, recorder: Recorder
) -> None:
    await declare_dlq(rabbitmq_url, names)

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
        retry=anycqrs.RetryPolicy(attempts=3, delay=0.0),
        dead_letter_exchange=names.dlx,
        prefetch=1,
    )
    async with running(consumer):
        async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
            await broker.send_many([Message.from_event(paid(i, "o")) for i in (1, 2)])
        await publish_raw(
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
    dead = await drain(rabbitmq_url, names.dlq)
    kinds = sorted(p.headers["anycqrs.error.type"] for p, _ in dead)
    assert kinds == ["DeserializationError", "UnknownEventName", "ValueError"]
    cursed = next(p for p, _ in dead if p.headers["anycqrs.error.type"] == "ValueError")
    assert cursed.headers["anycqrs.attempts"] == 3
    assert cursed.headers["anycqrs.original.queue"] == names.queue
    assert cursed.headers["anycqrs.original.routing_key"] == "o"
    assert cursed.headers["anycqrs.error.message"] == "cursed"
    assert cursed.delivery_mode == 2
    assert b"{broken" in [body for _, body in dead]
    assert await drain(rabbitmq_url, names.queue) == []


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
        retry=anycqrs.RetryPolicy(attempts=2, delay=0.0),
    )
    await declare_queue(rabbitmq_url, names, routing_key="#")
    async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
        await broker.send_message(Message.from_event(paid(1, "o")))
    with anyio.fail_after(30), pytest.raises(MessageHandlingError, match="#1") as raised:
        await consumer.run()
    assert raised.value.attempts == 2
    (left,) = await drain(rabbitmq_url, names.queue)
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
    left = await drain(rabbitmq_url, names.queue)
    assert [json.loads(body)["payload"]["order_id"] for _, body in left] == [3, 4, 5]


async def test_one_consumer_runs_twice(
    rabbitmq_url: str, names: Names, mediator: EventMediator, recorder: Recorder
) -> None:
    consumer = RabbitMQEventConsumer(
        rabbitmq_url, names.queue, mediator, bindings=[(names.exchange, "#")]
    )
    async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
        for order_id in (1, 2):
            async with running(consumer):
                await broker.send_message(Message.from_event(paid(order_id, "o")))
                await recorder.wait_for(lambda: len(recorder.events) == order_id)
    assert recorder.ids() == [1, 2]
    assert await drain(rabbitmq_url, names.queue) == []


async def test_feeds_any_event_sink(
    rabbitmq_url: str, names: Names, mediator: EventMediator
) -> None:
    got: list[Any] = []
    arrived = anyio.Event()

    class Sink:  # an anycqrs.consumers.EventSink that is no mediator
        event_map = mediator.event_map

        async def send(self, event: Any, /) -> None:
            got.append(event)
            arrived.set()

    assert isinstance(Sink(), EventSink)
    consumer = RabbitMQEventConsumer(
        rabbitmq_url, names.queue, Sink(), bindings=[(names.exchange, "#")]
    )
    async with running(consumer):
        async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
            await broker.send_message(Message.from_event(paid(7, "o", key="k")))
        with anyio.fail_after(30):
            await arrived.wait()
    assert [(e.payload.order_id, e.key, e.topic) for e in got] == [(7, "k", "o")]


def test_consumer_retry_policy_is_a_deprecated_alias() -> None:
    from anycqrs.brokers import rabbitmq

    with pytest.deprecated_call(match="anycqrs.RetryPolicy"):
        assert rabbitmq.ConsumerRetryPolicy is anycqrs.RetryPolicy
    assert "ConsumerRetryPolicy" not in rabbitmq.__all__


def test_consumer_arguments(mediator: EventMediator) -> None:
    with pytest.raises(ValueError, match="prefetch"):
        RabbitMQEventConsumer("amqp://x", "q", mediator, prefetch=0)
