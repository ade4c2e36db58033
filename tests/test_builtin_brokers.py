from __future__ import annotations

from typing import Any

import attrs
import pytest

import anycqrs
from anycqrs.brokers import (
    BatchMessageBroker,
    DevnullMessageBroker,
    InMemoryMessageBroker,
    Message,
    MessageBroker,
)
from anycqrs.brokers._message import publish_many

pytestmark = pytest.mark.anyio


@attrs.frozen
class Paid:
    order_id: int


def _message(i: int) -> Message:
    return Message.from_event(anycqrs.NotificationEvent(payload=Paid(i), topic="t", key=str(i)))


async def test_in_memory_keeps_order_and_bound() -> None:
    broker = InMemoryMessageBroker(max_messages=3)
    assert isinstance(broker, MessageBroker)
    for i in range(5):
        await broker.send_message(_message(i))
    assert [m.payload["payload"]["order_id"] for m in broker.messages] == [2, 3, 4]
    assert broker.max_messages == 3
    await broker.send_many([_message(9)])
    assert broker.messages[-1].key == "9"
    broker.clear()
    assert broker.messages == []
    with pytest.raises(ValueError, match="max_messages"):
        InMemoryMessageBroker(0)


async def test_message_from_event() -> None:
    event = anycqrs.NotificationEvent(
        payload=Paid(1), topic="orders", key="1", headers={"trace": "x"}
    )
    message = Message.from_event(event)
    assert message.message_name == "Paid"
    assert message.message_id == event.event_id
    assert message.topic == "orders"
    assert message.headers == {"trace": "x"}
    assert message.payload == anycqrs.to_dict(event)


async def test_devnull_keeps_nothing() -> None:
    broker = DevnullMessageBroker()
    await broker.send_message(_message(1))
    await broker.send_many([_message(2)])
    assert not hasattr(broker, "messages")


async def test_publish_many_falls_back_to_single_sends() -> None:
    sent: list[Any] = []

    class OneByOne:
        async def send_message(self, message: Message) -> None:
            sent.append(message.key)

    broker = OneByOne()
    assert isinstance(broker, MessageBroker)
    assert not isinstance(broker, BatchMessageBroker)
    await publish_many(broker, [_message(1), _message(2)])
    assert sent == ["1", "2"]


async def test_publish_many_uses_the_batch_capability() -> None:
    calls: list[Any] = []

    class Batches:
        async def send_message(self, message: Message) -> None:
            calls.append(("one", message.key))

        async def send_many(self, messages: Any) -> None:
            calls.append(("many", [m.key for m in messages]))

    assert isinstance(Batches(), BatchMessageBroker)
    for broker in (InMemoryMessageBroker(), DevnullMessageBroker()):
        assert isinstance(broker, BatchMessageBroker)
    await publish_many(Batches(), [_message(1), _message(2)])
    assert calls == [("many", ["1", "2"])]

    class SometimesBatches:
        async def send_message(self, message: Message) -> None:
            calls.append(("one", message.key))

    batching = SometimesBatches()
    batching.send_many = Batches().send_many  # type: ignore[attr-defined]
    calls.clear()
    await publish_many(batching, [_message(4)])
    assert calls == [("one", "4")]  # the capability belongs to the class, not an instance


def test_publish_many_is_private_but_still_reachable() -> None:
    import anycqrs.brokers

    assert "publish_many" not in anycqrs.brokers.__all__
    assert anycqrs.brokers.publish_many is publish_many
