"""`RabbitMQMessageBroker` against the real broker: wire format, confirms,
unroutable messages, and how it fails when it cannot connect."""

from __future__ import annotations

import json

import pytest

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.rabbitmq import RabbitMQMessageBroker
from anycqrs.errors import BrokerDeliveryError, BrokerError, ConnectionLost

from ..broker_helpers import paid
from .rabbitmq_helpers import Backoff, Names, Warnings, admin, drain, free_port, target, via

pytestmark = pytest.mark.anyio


async def test_wire_format_read_by_plain_pika(rabbitmq_url: str, names: Names) -> None:
    await admin(rabbitmq_url, lambda channel: channel.queue_declare(names.queue, durable=True))
    event = paid(5, names.queue, key="k5", headers={"tenant": "t"})
    async with RabbitMQMessageBroker(rabbitmq_url) as broker:  # default exchange
        await broker.send_message(Message.from_event(event))
    ((properties, body),) = await drain(rabbitmq_url, names.queue)
    assert json.loads(body) == anycqrs.to_dict(event)
    assert properties.delivery_mode == 2
    assert properties.message_id == str(event.event_id)
    assert properties.type == "OrderPaid"
    assert properties.headers == {"event_name": "OrderPaid", "key": "k5", "tenant": "t"}


async def test_unroutable_message_is_reported(rabbitmq_url: str, names: Names) -> None:
    async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
        with pytest.raises(BrokerDeliveryError, match="unroutable") as raised:
            await broker.send_many(
                [Message.from_event(paid(i, "nobody.listens")) for i in range(2)]
            )
    assert raised.value.delivered == 0
    assert len(raised.value.failures) == 2


async def test_not_entered_is_not_connected(rabbitmq_url: str) -> None:
    broker = RabbitMQMessageBroker(rabbitmq_url)
    with pytest.raises(ConnectionLost, match="not connected"):
        await broker.send_message(Message.from_event(paid(1, "x")))


async def test_no_broker_without_reconnect_fails_at_once(warnings_log: Warnings) -> None:
    with pytest.raises(ConnectionLost, match="Cannot connect"):
        async with RabbitMQMessageBroker(via("amqp://", free_port()), reconnect=None):
            pass
    assert warnings_log.attempts() == []


async def test_no_broker_follows_the_default_policy_then_gives_up(
    warnings_log: Warnings,
) -> None:
    broker = RabbitMQMessageBroker(via("amqp://", free_port()))
    backoff = Backoff.on(broker)
    with pytest.raises(BrokerError, match=r"cannot reconnect after 8 attempt\(s\)") as raised:
        async with broker:
            pass
    assert "Cannot connect" in str(raised.value)
    assert isinstance(raised.value.__cause__, ConnectionLost)
    # the default: 8 reconnects, 0.1 s doubling, ~25 s in all
    assert backoff.delays == [0.1 * 2**n for n in range(8)]
    attempts = warnings_log.attempts()
    assert len(attempts) == 8
    assert "cannot connect" in attempts[0]
    assert "(attempt 1 of 8)" in attempts[0]
    assert "(attempt 8 of 8)" in attempts[-1]


async def test_bad_credentials_are_not_retried(rabbitmq_url: str, warnings_log: Warnings) -> None:
    wrong = via(rabbitmq_url, target(rabbitmq_url)[1], user="nobody", password="wrong")
    broker = RabbitMQMessageBroker(wrong)
    backoff = Backoff.on(broker)
    with pytest.raises(ConnectionLost, match="Cannot connect"):
        async with broker:
            pass
    assert backoff.delays == []
    assert warnings_log.attempts() == []
