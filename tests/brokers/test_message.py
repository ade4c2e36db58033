"""`Message`: built from an event it carries the JSON it is sent as, and still
behaves like a message built by hand with `to_dict(event)`."""

from __future__ import annotations

import copy
import enum
import pickle
from collections.abc import Iterator

import attrs
import orjson
import pytest

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers._message import encoded_payload, payload_json
from anycqrs.serialization import dumps, set_fast_path


@attrs.frozen
class Paid:
    order_id: int
    amount: float


class Color(enum.Enum):
    RED = "red"


@attrs.frozen
class Painted:
    color: Color  # enums go to the converter: no pre-encoded JSON


def _event() -> anycqrs.NotificationEvent[Paid]:
    return anycqrs.NotificationEvent(
        payload=Paid(1, 2.5), topic="orders", key="1", headers={"tenant": "a"}
    )


def _by_hand(event: anycqrs.NotificationEvent[Paid]) -> Message:
    return Message(
        message_name=event.event_name,
        topic=event.topic,
        payload=anycqrs.to_dict(event),
        message_id=event.event_id,
        key=event.key,
        headers=dict(event.headers),
    )


@pytest.fixture
def slow_path() -> Iterator[None]:
    previous = set_fast_path(False)
    yield
    set_fast_path(previous)


class TestFromEvent:
    """A message from `from_event` is encoded once and reads like the hand-built one."""

    def test_carries_the_json_it_is_sent_as(self) -> None:
        event = _event()
        message = Message.from_event(event)
        raw = encoded_payload(message)
        assert raw is not None
        assert payload_json(message) is raw
        assert orjson.loads(raw) == anycqrs.to_dict(event)

    def test_payload_is_to_dict_of_the_event(self) -> None:
        event = _event()
        message = Message.from_event(event)
        assert message.payload == anycqrs.to_dict(event)
        assert message.payload is message.payload  # decoded once

    def test_equals_the_message_built_by_hand(self) -> None:
        event = _event()
        message, by_hand = Message.from_event(event), _by_hand(event)
        assert message == by_hand
        assert by_hand == message
        assert message == Message.from_event(event)
        assert message != attrs.evolve(by_hand, payload={"other": 1})

    def test_repr_shows_the_payload(self) -> None:
        event = _event()
        assert repr(Message.from_event(event)) == repr(_by_hand(event))
        assert "payload={'event_id'" in repr(Message.from_event(event))

    def test_evolve_keeps_or_replaces_the_payload(self) -> None:
        message = Message.from_event(_event())
        traced = attrs.evolve(message, headers={"traceparent": "00-1-2-01"})
        assert encoded_payload(traced) is encoded_payload(message)
        assert traced.payload == message.payload
        replaced = attrs.evolve(message, payload={"order_id": 2})
        assert replaced.payload == {"order_id": 2}
        assert encoded_payload(replaced) is None
        assert payload_json(replaced) == dumps({"order_id": 2})

    def test_pickles_and_copies(self) -> None:
        message = Message.from_event(_event())
        for again in (pickle.loads(pickle.dumps(message)), copy.deepcopy(message)):
            assert again == message
            assert again.payload == message.payload
            assert encoded_payload(again) == encoded_payload(message)

    def test_from_event_sets_every_field(self) -> None:
        # `from_event` fills the slots itself (not through the attrs __init__):
        # every field is set, to what the constructor would set it to.
        event = _event()
        message, by_hand = Message.from_event(event), _by_hand(event)
        assert type(message) is Message
        for field in attrs.fields(Message):
            assert getattr(message, field.name) == getattr(by_hand, field.name), field.name
        assert message.message_id is event.event_id
        assert message.headers == {"tenant": "a"}
        assert message.headers is not event.headers

    def test_from_event_of_a_subclass_uses_its_init(self) -> None:
        @attrs.frozen(kw_only=True)
        class Tagged(Message):
            tag: str = "default"

        event = _event()
        message = Tagged.from_event(event)
        assert type(message) is Tagged
        assert message.tag == "default"
        assert message.payload == anycqrs.to_dict(event)
        assert message.message_id == event.event_id

    def test_unhashable_like_its_dict(self) -> None:
        with pytest.raises(TypeError):
            hash(Message.from_event(_event()))
        with pytest.raises(TypeError):
            hash(_by_hand(_event()))


class TestPlainPayload:
    """Without the fast codec the payload is `to_dict(event)`, encoded when sent."""

    def test_a_type_the_fast_codec_leaves_alone(self) -> None:
        event = anycqrs.NotificationEvent(payload=Painted(Color.RED), topic="t")
        message = Message.from_event(event)
        assert encoded_payload(message) is None
        assert message.payload == anycqrs.to_dict(event)
        assert payload_json(message) == dumps(anycqrs.to_dict(event))

    @pytest.mark.usefixtures("slow_path")
    def test_fast_path_off(self) -> None:
        event = _event()
        message = Message.from_event(event)
        assert encoded_payload(message) is None
        assert message == _by_hand(event)
        assert payload_json(message) == dumps(anycqrs.to_dict(event))

    def test_a_message_built_by_hand(self) -> None:
        message = Message(message_name="X", topic="t", payload={"a": [1, 2]})
        assert message.payload == {"a": [1, 2]}
        assert encoded_payload(message) is None
        assert payload_json(message) == b'{"a":[1,2]}'
