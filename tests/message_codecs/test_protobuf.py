"""`ProtobufCodec` with a message class generated at test time (no protoc:
the descriptor is built with descriptor_pb2)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import UUID, uuid4

import anyio
import attrs
import lagom
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from anycqrs import NotificationEvent
from anycqrs.brokers import InMemoryMessageBroker, Message
from anycqrs.codecs import MessageCodec, ProtobufCodec, ProtoConvertible
from anycqrs.consumers import EventDecoder, InMemoryTransport, consume
from anycqrs.errors import DeserializationError, SerializationError, UnknownEventName
from anycqrs.events import EventHandler, EventMap, EventMediator


def _generated() -> tuple[Any, Any]:
    """`orders.OrderPaid` and `orders.Shipped`, as protoc would generate them."""
    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    wkt = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(wkt)
    pool.Add(wkt)
    file = descriptor_pb2.FileDescriptorProto(
        name="orders.proto",
        package="orders",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    line = file.message_type.add(name="Line")
    line.field.add(name="sku", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    line.field.add(name="quantity", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    paid = file.message_type.add(name="OrderPaid")
    for number, name, kind in (
        (1, "order_id", F.TYPE_INT64),
        (2, "amount", F.TYPE_DOUBLE),
        (3, "paid_by", F.TYPE_STRING),
    ):
        paid.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)
    paid.field.add(
        name="lines",
        number=4,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".orders.Line",
    )
    paid.field.add(
        name="paid_at",
        number=5,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".google.protobuf.Timestamp",
    )
    entry = paid.nested_type.add(name="TagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    paid.field.add(
        name="tags",
        number=6,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".orders.OrderPaid.TagsEntry",
    )
    shipped = file.message_type.add(name="Shipped")
    shipped.field.add(name="tracking", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("orders.OrderPaid")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("orders.Shipped")),
    )


OrderPaidProto, ShippedProto = _generated()


@attrs.frozen
class Line:
    sku: str
    quantity: int


@attrs.frozen
class OrderPaid:
    order_id: int
    amount: float
    paid_by: UUID
    lines: list[Line]
    paid_at: datetime | None
    tags: dict[str, int]


@attrs.frozen
class Shipped:
    """A payload with python-cqrs's hooks: it converts itself."""

    tracking: str

    def proto(self) -> Any:
        return ShippedProto(tracking=self.tracking.upper())

    @classmethod
    def from_proto(cls, message: Any) -> Shipped:
        return cls(tracking=message.tracking.lower())


EVENTS = EventMap()
EVENTS.bind(NotificationEvent[OrderPaid], EventHandler)  # type: ignore[type-abstract]
EVENTS.bind(NotificationEvent[Shipped], EventHandler)  # type: ignore[type-abstract]
CODEC = ProtobufCodec({OrderPaid: OrderPaidProto, Shipped: ShippedProto})

big = st.integers(-(2**63), 2**63 - 1)
payloads = st.builds(
    OrderPaid,
    order_id=big,
    amount=st.floats(allow_nan=False, allow_infinity=False),
    paid_by=st.uuids(),
    lines=st.lists(st.builds(Line, sku=st.text(max_size=5), quantity=big), max_size=3),
    paid_at=st.none()
    | st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 1, 1),
        timezones=st.just(timezone.utc),
    ).map(lambda d: d.replace(microsecond=d.microsecond)),
    tags=st.dictionaries(st.text(max_size=4), big, max_size=3),
)


class TestProtobufCodec:
    """Payloads as generated protobuf messages in the anycqrs envelope."""

    @given(payloads, st.none() | st.text(min_size=1, max_size=4))
    def test_round_trip(self, payload: OrderPaid, key: str | None) -> None:
        event = NotificationEvent(payload=payload, topic="orders", key=key, headers={"h": "v"})
        raw = CODEC.encode(Message.from_event(event))
        assert CODEC.decode(raw, None, EVENTS) == event
        assert EventDecoder(EVENTS, CODEC)(raw, "OrderPaid", "other", None) == event

    def test_value_is_protobuf(self) -> None:
        event = NotificationEvent(
            payload=OrderPaid(7, 2.5, UUID(int=1), [Line("a", 2**40)], None, {}), topic="orders"
        )
        envelope = CODEC._envelope.FromString(CODEC.encode(Message.from_event(event)))
        assert envelope.event_id == str(event.event_id) and envelope.event_name == "OrderPaid"
        proto = OrderPaidProto.FromString(envelope.payload)
        assert proto.order_id == 7 and proto.lines[0].quantity == 2**40
        assert not proto.HasField("paid_at")

    def test_hooks_convert_the_payload(self) -> None:
        event = NotificationEvent(payload=Shipped("ab-1"), topic="orders")
        raw = CODEC.encode(Message.from_event(event))
        envelope = CODEC._envelope.FromString(raw)
        assert ShippedProto.FromString(envelope.payload).tracking == "AB-1"  # proto() ran
        assert CODEC.decode(raw, None, EVENTS).payload == Shipped("ab-1")  # from_proto() ran
        assert issubclass(Shipped, ProtoConvertible) and not issubclass(OrderPaid, ProtoConvertible)

    def test_errors(self) -> None:
        with pytest.raises(DeserializationError, match="malformed protobuf envelope"):
            CODEC.decode(b"\xff\xff\xff", None, EVENTS)
        other = ProtobufCodec({"Other": ShippedProto})
        raw = other.encode(Message(message_name="Other", topic="t", payload={"payload": {}}))
        with pytest.raises(UnknownEventName):
            CODEC.decode(raw, None, EVENTS)
        message = Message(message_name="Nope", topic="t", payload={"payload": {}})
        with pytest.raises(SerializationError, match="no message class for event 'Nope'"):
            CODEC.encode(message)
        bad = Message(message_name="OrderPaid", topic="t", payload={"payload": {"order_id": "x"}})
        with pytest.raises(SerializationError, match="as OrderPaid"):
            CODEC.encode(bad)
        assert isinstance(CODEC, MessageCodec) and CODEC.content_type == "application/x-protobuf"


class Seen(EventHandler[NotificationEvent[Shipped]]):
    got: list[Any] = []

    async def handle(self, event: NotificationEvent[Shipped]) -> None:
        Seen.got.append(event.payload)


@pytest.mark.anyio
async def test_consumed_through_the_lanes() -> None:
    Seen.got = []
    events = EventMap()
    events.bind(NotificationEvent[Shipped], Seen)
    mediator = EventMediator(events, container=lagom.Container())
    broker = InMemoryMessageBroker(codec=CODEC)
    await broker.send_message(
        Message.from_event(NotificationEvent(payload=Shipped("x1"), topic="t", event_id=uuid4()))
    )
    transport = InMemoryTransport()
    transport.put(broker.encoded(broker.messages[0]), event_name="Shipped")
    transport.put_event(NotificationEvent(payload=Shipped("x2"), topic="t"), codec=CODEC)
    transport.put(b"garbage", event_name="Shipped")
    transport.close()
    with anyio.fail_after(10):
        await consume(mediator, transport, codec=CODEC)
    assert sorted(Seen.got, key=lambda s: s.tracking) == [Shipped("x1"), Shipped("x2")]
    assert len(transport.dead_letters) == 1
