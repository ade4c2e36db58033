"""`PythonCqrsCodec` against python-cqrs 5.3's own serializer and deserializer."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from uuid import UUID, uuid4

import anyio
import lagom
import orjson
import pytest
from cqrs.deserializers import JsonDeserializer
from cqrs.serializers import JsonEventSerializer
from hypothesis import given
from hypothesis import strategies as st

import anycqrs
from anycqrs import NotificationEvent
from anycqrs.brokers import InMemoryMessageBroker, Message
from anycqrs.codecs import JsonCodec, MessageCodec, PythonCqrsCodec
from anycqrs.consumers import EventDecoder, InMemoryTransport, consume
from anycqrs.errors import DeserializationError, SerializationError, UnknownEventName
from anycqrs.events import EventHandler, EventMap, EventMediator

from .python_cqrs_models import CqrsLine, CqrsOrderPaid, CqrsOrderPaidEvent, Line, OrderPaid

EVENTS = EventMap()
EVENTS.bind(NotificationEvent[OrderPaid], EventHandler)  # type: ignore[type-abstract]


def cqrs_event(**kw: Any) -> CqrsOrderPaidEvent:
    payload = CqrsOrderPaid(
        order_id=7,
        total_amount=12.5,
        paid_by=UUID(int=9),
        extra_info={"gift_wrap": 1},
        lines=[CqrsLine(sku_code="A-1", unit_count=2)],
    )
    return CqrsOrderPaidEvent(topic="orders", payload=payload, **kw)


def ours(**kw: Any) -> NotificationEvent[OrderPaid]:
    payload = OrderPaid(
        order_id=7,
        total_amount=12.5,
        paid_by=UUID(int=9),
        extra_info={"gift_wrap": 1},
        lines=[Line(sku_code="A-1", unit_count=2)],
    )
    return NotificationEvent(payload=payload, topic="orders", event_name="OrderPaid", **kw)


class TestReadingPythonCqrs:
    """What python-cqrs 5.3's JSON serializer writes, anycqrs reads."""

    def test_its_serializer_output(self) -> None:
        theirs = cqrs_event()
        raw = JsonEventSerializer().serialize(theirs)
        assert b'"eventName"' in raw and b'"orderId"' in raw  # the camelCase wire
        event = PythonCqrsCodec().decode(raw, None, EVENTS)
        assert event.event_id == theirs.event_id
        assert event.event_name == "OrderPaid" and event.topic == "orders"
        assert event.payload == OrderPaid(
            order_id=7,
            total_amount=12.5,
            paid_by=UUID(int=9),
            extra_info={"gift_wrap": 1},
            lines=[Line(sku_code="A-1", unit_count=2)],
        )
        # python-cqrs writes local time without an offset: read as UTC
        assert event.event_timestamp == theirs.event_timestamp.replace(tzinfo=timezone.utc)

    def test_snake_case_keys_too(self) -> None:
        # python-cqrs's pydantic events write field names as they are
        data = {
            "event_name": "OrderPaid",
            "event_id": str(uuid4()),
            "topic": "orders",
            "payload": {"order_id": 1, "total_amount": 2, "paid_by": str(UUID(int=1))},
        }
        event = PythonCqrsCodec().decode(json.dumps(data).encode(), None, EVENTS)
        assert event.payload.total_amount == 2.0 and event.payload.lines == []

    def test_its_pydantic_events(self) -> None:
        from cqrs.events import PydanticNotificationEvent

        class PaidEvent(PydanticNotificationEvent[dict[str, Any]]):
            event_name: str = "OrderPaid"

        payload = {"order_id": 3, "total_amount": 1.5, "paid_by": str(UUID(int=3))}
        theirs = PaidEvent(topic="orders", payload=payload)
        raw = JsonEventSerializer().serialize(theirs)
        assert b'"event_name"' in raw  # pydantic events write snake_case
        event = PythonCqrsCodec().decode(raw, None, EVENTS)
        assert event.event_id == theirs.event_id
        assert event.payload.order_id == 3 and event.payload.paid_by == UUID(int=3)

    def test_header_name_wins(self) -> None:
        raw = JsonEventSerializer().serialize(cqrs_event())
        with pytest.raises(UnknownEventName):
            PythonCqrsCodec().decode(raw, "Other", EVENTS)

    @pytest.mark.parametrize(
        ("raw", "fragment"),
        [
            (b"not json", "malformed JSON"),
            (b"[1]", "expected a JSON object"),
            (b'{"payload": {}}', "no event_name header and no eventName field"),
            (
                b'{"eventName": "OrderPaid", "payload": {"orderId": "7", "totalAmount": 1,'
                b' "paidBy": "00000000-0000-0000-0000-000000000001"}}',
                "@ $.payload.order_id",
            ),
            (b'{"eventName": "OrderPaid", "payload": {"orderId": 7}}', "@ $.payload.total_amount"),
        ],
    )
    def test_bad_input_names_the_problem(self, raw: bytes, fragment: str) -> None:
        with pytest.raises(DeserializationError, match=fragment.replace("$", r"\$")):
            PythonCqrsCodec().decode(raw, None, EVENTS)


class TestWritingForPythonCqrs:
    """What anycqrs writes with the codec, python-cqrs 5.3 reads."""

    def test_same_shape_as_its_serializer(self) -> None:
        event = ours(event_id=uuid4())
        raw = PythonCqrsCodec(EVENTS).encode(Message.from_event(event))
        theirs = orjson.loads(JsonEventSerializer().serialize(cqrs_event(event_id=event.event_id)))
        mine = orjson.loads(raw)
        assert list(mine) == list(theirs)  # eventName, payload, eventId, eventTimestamp, topic
        assert mine["eventId"] == theirs["eventId"] == event.event_id.hex
        assert mine["payload"] == {**theirs["payload"], "paidAt": None}

    def test_its_deserializer_reads_it(self) -> None:
        event = ours()
        raw = PythonCqrsCodec(EVENTS).encode(Message.from_event(event))
        theirs = JsonDeserializer(CqrsOrderPaidEvent)(raw)
        assert isinstance(theirs, CqrsOrderPaidEvent), theirs
        assert theirs.event_id == event.event_id
        assert theirs.event_timestamp == event.event_timestamp
        assert theirs.payload["orderId"] == 7  # python-cqrs leaves a generic payload a dict
        assert theirs.payload["extraInfo"] == {"gift_wrap": 1}  # dict keys stay

    def test_payload_classes_instead_of_bindings(self) -> None:
        raw = PythonCqrsCodec([OrderPaid]).encode(Message.from_event(ours()))
        assert orjson.loads(raw)["payload"]["extraInfo"] == {"gift_wrap": 1}
        assert orjson.loads(raw)["payload"]["paidBy"] == UUID(int=9).hex

    def test_without_bindings_every_key_is_renamed(self) -> None:
        raw = PythonCqrsCodec().encode(Message.from_event(ours()))
        assert orjson.loads(raw)["payload"]["extraInfo"] == {"giftWrap": 1}

    def test_refuses_a_message_that_is_no_event(self) -> None:
        message = Message(message_name="x", topic="t", payload=[1, 2])
        with pytest.raises(SerializationError, match="not an event's to_dict"):
            PythonCqrsCodec().encode(message)

    @given(
        order_id=st.integers(-(2**53), 2**53),
        keys=st.dictionaries(
            st.lists(st.sampled_from(["a", "bc", "user", "id"]), min_size=1, max_size=3).map(
                "_".join
            ),
            st.integers(-(2**53), 2**53),
            max_size=3,
        ),
        skus=st.lists(st.text(max_size=5), max_size=3),
        key=st.none() | st.text(min_size=1, max_size=5),
    )
    def test_round_trip(
        self, order_id: int, keys: dict[str, int], skus: list[str], key: str | None
    ) -> None:
        payload = OrderPaid(
            order_id=order_id,
            total_amount=1.5,
            paid_by=uuid4(),
            extra_info=keys,
            lines=[Line(sku_code=s, unit_count=1) for s in skus],
            paid_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        )
        event = NotificationEvent(payload=payload, topic="orders", key=key)
        codec = PythonCqrsCodec(EVENTS)
        again = EventDecoder(EVENTS, codec)(
            codec.encode(Message.from_event(event)), None, "orders", key
        )
        assert again == event  # the key comes back from the transport


class Seen(EventHandler[NotificationEvent[OrderPaid]]):
    got: list[NotificationEvent[OrderPaid]] = []

    async def handle(self, event: NotificationEvent[OrderPaid]) -> None:
        Seen.got.append(event)


@pytest.mark.anyio
class TestInMemory:
    """The consumer layer and the in-memory broker speak the codec too."""

    async def test_consume_python_cqrs_bytes(self) -> None:
        Seen.got = []
        events = EventMap()
        events.bind(NotificationEvent[OrderPaid], Seen)
        mediator = EventMediator(events, container=lagom.Container())
        transport = InMemoryTransport()
        transport.put(JsonEventSerializer().serialize(cqrs_event()), topic="orders", key="7")
        transport.put_event(ours(), codec=PythonCqrsCodec())
        transport.put(b'{"eventName": "OrderPaid", "payload": {}}', topic="orders")
        transport.close()
        with anyio.fail_after(10):
            await consume(mediator, transport, codec=PythonCqrsCodec())
        assert [e.payload.order_id for e in Seen.got] == [7, 7]
        assert sorted(str(e.key) for e in Seen.got) == ["7", "None"]
        (dead,) = transport.dead_letters
        assert isinstance(dead.error, DeserializationError)

    async def test_memory_broker_checks_with_its_codec(self) -> None:
        broker = InMemoryMessageBroker(codec=PythonCqrsCodec())
        await broker.send_message(Message.from_event(ours()))
        assert orjson.loads(broker.encoded(broker.messages[0]))["eventName"] == "OrderPaid"
        with pytest.raises(SerializationError):
            await broker.send_message(Message(message_name="x", topic="t", payload=3))
        assert len(broker.messages) == 1
        assert b'"event_name":"OrderPaid"' in InMemoryMessageBroker().encoded(broker.messages[0])


def test_codecs_are_message_codecs() -> None:
    assert isinstance(PythonCqrsCodec(), MessageCodec)
    assert isinstance(JsonCodec(), MessageCodec)
    event = ours()
    raw = JsonCodec().encode(Message.from_event(event))
    assert JsonCodec().decode(raw, "OrderPaid", EVENTS) == event
    assert anycqrs.codecs.JSON.transport_headers and not PythonCqrsCodec.transport_headers
