"""The in-memory broker refuses what a real broker's wire would refuse."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest

import anycqrs
from anycqrs.brokers import InMemoryMessageBroker, Message
from anycqrs.errors import EventDispatchError, SerializationError
from anycqrs.events.bootstrap import bootstrap
from anycqrs.requests.bootstrap import bootstrap as bootstrap_requests

pytestmark = pytest.mark.anyio


class Plain:
    """Not attrs, not a dataclass: nothing a codec can write."""


@attrs.frozen
class WithDecimal:
    amount: Decimal


@attrs.frozen
class WithPlain:
    thing: Plain


@attrs.frozen
class Fine:
    amount: int


@pytest.mark.parametrize("payload", [WithDecimal(Decimal("1.10")), WithPlain(Plain())])
async def test_unencodable_payload_is_refused_like_the_wire(payload: object) -> None:
    broker = InMemoryMessageBroker()
    event = anycqrs.NotificationEvent(payload=payload, topic="t")
    with pytest.raises(SerializationError):
        await broker.send_message(Message.from_event(event))
    assert broker.messages == []


@attrs.frozen
class Charge(anycqrs.Request):
    amount: str


class ChargeHandler(anycqrs.RequestHandler[Charge, str]):
    async def handle(self, request: Charge) -> str:
        self.emit(
            anycqrs.NotificationEvent(payload=WithDecimal(Decimal(request.amount)), topic="t")
        )
        return request.amount


async def test_a_command_whose_notification_cannot_be_encoded_fails_its_send() -> None:
    broker = InMemoryMessageBroker()
    mediator = bootstrap_requests(
        message_broker=broker,
        commands_mapper=lambda requests: requests.bind(Charge, ChargeHandler),
    )
    with pytest.raises(EventDispatchError) as caught:
        await mediator.send(Charge("1.10"))
    assert caught.value.response == "1.10"
    assert [type(e) for e in caught.value.exceptions] == [SerializationError]
    assert "WithDecimal" in str(caught.value.exceptions[0])
    assert broker.messages == []


class EmitsDecimal(anycqrs.EventHandler[anycqrs.NotificationEvent[Fine]]):
    async def handle(self, event: anycqrs.NotificationEvent[Fine]) -> None:
        self.emit(anycqrs.NotificationEvent(payload=WithDecimal(Decimal(event.payload.amount))))


@pytest.mark.parametrize("concurrent", [False, True])
async def test_an_unencodable_follow_up_fails_the_event_send(concurrent: bool) -> None:
    broker = InMemoryMessageBroker()
    mediator = bootstrap(
        message_broker=broker,
        events_mapper=lambda events: events.bind(anycqrs.NotificationEvent[Fine], EmitsDecimal),
        concurrent_event_handle_enable=concurrent,
    )
    with pytest.raises(SerializationError):
        await mediator.send(anycqrs.NotificationEvent(payload=Fine(1), topic="t"))
    assert broker.messages == []


async def test_a_batch_with_one_bad_message_keeps_none() -> None:
    broker = InMemoryMessageBroker()
    good = Message.from_event(anycqrs.NotificationEvent(payload=Fine(1), topic="t"))
    bad = Message.from_event(anycqrs.NotificationEvent(payload=WithPlain(Plain()), topic="t"))
    with pytest.raises(SerializationError):
        await broker.send_many([good, bad])
    assert broker.messages == []
    await broker.send_many(iter([good]))
    assert broker.messages == [good]


async def test_what_it_keeps_is_what_the_wire_carries() -> None:
    broker = InMemoryMessageBroker()
    event = anycqrs.NotificationEvent(payload=Fine(1), topic="t", key="k")
    await broker.send_message(Message.from_event(event))
    (kept,) = broker.messages
    assert kept.payload == anycqrs.to_dict(event)
    again = anycqrs.from_dict(anycqrs.NotificationEvent[Fine], kept.payload)
    assert again == event
