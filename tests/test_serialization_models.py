"""pydantic v2 models and msgspec Structs as messages: to_dict / from_dict, JSON,
errors naming the field, and the mediators, saga storage and consumers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import anyio
import lagom
import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anycqrs
from anycqrs import NotificationEvent, from_dict, to_dict
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.errors import DeserializationError
from anycqrs.events import EventMap, EventMediator
from anycqrs.serialization import from_json, set_fast_path, to_json


@pytest.fixture(autouse=True, scope="module", params=["fast", "general"])
def codec(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs with the msgspec fast path on and off."""
    previous = set_fast_path(request.param == "fast")
    yield request.param
    set_fast_path(previous)


class Line(pydantic.BaseModel):
    sku: str
    quantity: int


class OrderPaidModel(pydantic.BaseModel):
    order_id: UUID
    paid_at: datetime
    amount: float
    lines: list[Line]
    note: str | None = None


class Item(msgspec.Struct):
    sku: str
    quantity: int


class OrderPaidStruct(msgspec.Struct):
    order_id: UUID
    paid_at: datetime
    amount: float
    lines: list[Item]
    tags: dict[int, str] = {}
    note: str | None = None


class LaxModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=False)
    count: int


aware = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(timezone.utc)
)
text = st.text(max_size=8)
models = st.builds(
    OrderPaidModel,
    order_id=st.uuids(),
    paid_at=aware,
    amount=st.floats(allow_nan=False, allow_infinity=False),
    lines=st.lists(st.builds(Line, sku=text, quantity=st.integers(-(2**53), 2**53)), max_size=3),
    note=st.none() | text,
)
structs = st.builds(
    OrderPaidStruct,
    order_id=st.uuids(),
    paid_at=aware,
    amount=st.floats(allow_nan=False, allow_infinity=False),
    lines=st.lists(st.builds(Item, sku=text, quantity=st.integers(-(2**53), 2**53)), max_size=3),
    tags=st.dictionaries(st.integers(-1000, 1000), text, max_size=3),
    note=st.none() | text,
)


class TestRoundTrips:
    """Models and Structs survive to_dict / from_dict and JSON, alone and as payloads."""

    @given(models)
    def test_pydantic_model(self, model: OrderPaidModel) -> None:
        assert from_dict(OrderPaidModel, to_dict(model)) == model
        assert from_json(OrderPaidModel, to_json(model)) == model
        event = NotificationEvent(payload=model, topic="orders", key="k")
        assert from_dict(NotificationEvent[OrderPaidModel], to_dict(event)) == event
        assert from_json(NotificationEvent[OrderPaidModel], to_json(event)) == event

    @given(structs)
    def test_msgspec_struct(self, struct: OrderPaidStruct) -> None:
        assert from_dict(OrderPaidStruct, to_dict(struct)) == struct
        assert from_json(OrderPaidStruct, to_json(struct)) == struct
        event = NotificationEvent(payload=struct, topic="orders")
        assert from_dict(NotificationEvent[OrderPaidStruct], to_dict(event)) == event
        assert from_json(NotificationEvent[OrderPaidStruct], to_json(event)) == event

    def test_plain_data_is_json_ready(self) -> None:
        model = OrderPaidModel(
            order_id=UUID(int=1),
            paid_at=datetime(2024, 1, 2, tzinfo=timezone.utc),
            amount=1,
            lines=[Line(sku="a", quantity=2)],
        )
        data = to_dict(NotificationEvent(payload=model, topic="t"))["payload"]
        assert data["order_id"] == str(UUID(int=1))
        assert data["paid_at"].startswith("2024-01-02T00:00:00")
        assert data["lines"] == [{"sku": "a", "quantity": 2}]

    def test_pydantic_aliases_are_the_wire_names(self) -> None:
        class Aliased(pydantic.BaseModel):
            model_config = pydantic.ConfigDict(populate_by_name=True)
            order_id: int = pydantic.Field(alias="orderId")

        assert to_dict(Aliased(orderId=3)) == {"orderId": 3}
        assert from_dict(Aliased, {"orderId": 3}) == Aliased(orderId=3)


class TestErrors:
    """Validation errors become DeserializationError naming the field."""

    def test_pydantic_field_named(self) -> None:
        data = {"order_id": "nope", "paid_at": "2024-01-01T00:00:00Z", "amount": 1, "lines": []}
        event = {"payload": data, "topic": "t", "event_name": "OrderPaidModel"}
        with pytest.raises(DeserializationError) as info:
            from_dict(NotificationEvent[OrderPaidModel], event)
        assert "@ $.payload.order_id" in str(info.value)

    def test_pydantic_nested_index_named(self) -> None:
        data = {
            "order_id": str(UUID(int=1)),
            "paid_at": "2024-01-01T00:00:00Z",
            "amount": 1,
            "lines": [{"sku": "a", "quantity": 1}, {"sku": "b"}],
        }
        with pytest.raises(DeserializationError) as info:
            from_dict(OrderPaidModel, data)
        assert "Field required @ $.lines[1].quantity" in str(info.value)

    def test_pydantic_is_strict_unless_the_model_says_lax(self) -> None:
        data = {"sku": "a", "quantity": "42"}
        with pytest.raises(DeserializationError, match=r"@ \$\.quantity"):
            from_dict(Line, data)
        assert from_dict(LaxModel, {"count": "42"}) == LaxModel(count=42)

    def test_struct_field_named(self) -> None:
        data = {
            "order_id": str(UUID(int=1)),
            "paid_at": "2024-01-01T00:00:00Z",
            "amount": 1,
            "lines": [{"sku": "a", "quantity": "1"}],
        }
        with pytest.raises(DeserializationError) as info:
            from_dict(NotificationEvent[OrderPaidStruct], {"payload": data, "topic": "t"})
        assert "@ $.payload.lines[0].quantity" in str(info.value)

    def test_struct_missing_field_named(self) -> None:
        with pytest.raises(DeserializationError, match="sku"):
            from_dict(Item, {"quantity": 1})


class PlaceOrder(pydantic.BaseModel, anycqrs.Request["Placed"]):
    customer: str
    total: int


class Placed(pydantic.BaseModel, anycqrs.Response):
    order_id: int
    customer: str


class PlaceOrderHandler(anycqrs.RequestHandler[PlaceOrder, Placed]):
    async def handle(self, request: PlaceOrder) -> Placed:
        line = Item(sku="x", quantity=request.total)
        paid = OrderPaidStruct(
            order_id=UUID(int=7), paid_at=datetime.now(timezone.utc), amount=1.5, lines=[line]
        )
        self.emit(NotificationEvent(payload=paid, topic="orders"))
        return Placed(order_id=7, customer=request.customer)


class Counter(pydantic.BaseModel, anycqrs.saga.SagaContext):
    order_id: int
    steps: list[str] = []


class Tick(anycqrs.saga.SagaStepHandler[Counter, int]):
    async def act(self, context: Counter) -> int:
        context.steps.append("tick")
        return len(context.steps)

    async def compensate(self, context: Counter) -> None:
        context.steps.clear()


class Tock(Tick):
    pass


class CounterSaga(anycqrs.saga.Saga[Counter]):
    steps = [Tick, Tock]


class StructCounter(msgspec.Struct, anycqrs.saga.SagaContext):
    order_id: int
    steps: list[str] = []


class StructTick(anycqrs.saga.SagaStepHandler[StructCounter, int]):
    async def act(self, context: StructCounter) -> int:
        context.steps.append("tick")
        return len(context.steps)

    async def compensate(self, context: StructCounter) -> None:
        context.steps.clear()


class StructSaga(anycqrs.saga.Saga[StructCounter]):
    steps = [StructTick]


class Seen:
    def __init__(self) -> None:
        self.events: list[Any] = []


class Stocked(pydantic.BaseModel, anycqrs.DomainEvent):
    sku: str


class Restocked(msgspec.Struct, anycqrs.DomainEvent):
    sku: str


class RestockHandler(anycqrs.RequestHandler[PlaceOrder, None]):
    async def handle(self, request: PlaceOrder) -> None:
        self.emit(Stocked(sku=request.customer))


class OnStocked(anycqrs.EventHandler[Stocked]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: Stocked) -> None:
        self.seen.events.append(event)
        self.emit(Restocked(sku=event.sku))


class OnRestocked(anycqrs.EventHandler[Restocked]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: Restocked) -> None:
        self.seen.events.append(event)


class RecordModel(anycqrs.EventHandler[NotificationEvent[OrderPaidModel]]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: NotificationEvent[OrderPaidModel]) -> None:
        self.seen.events.append(event)


@pytest.mark.anyio
class TestEverywhere:
    """Models work as requests, responses, payloads on the wire and saga contexts."""

    async def test_request_response_and_payload_on_the_broker(self) -> None:
        from anycqrs.requests.bootstrap import bootstrap

        broker = anycqrs.brokers.InMemoryMessageBroker()
        mediator = bootstrap(
            commands_mapper=lambda m: m.bind(PlaceOrder, PlaceOrderHandler),
            message_broker=broker,
        )
        placed = await mediator.send(PlaceOrder(customer="ada", total=3))
        assert placed == Placed(order_id=7, customer="ada")
        (message,) = broker.messages
        assert message.message_name == "OrderPaidStruct"
        assert message.payload["payload"]["lines"] == [{"sku": "x", "quantity": 3}]
        event = from_dict(NotificationEvent[OrderPaidStruct], message.payload)
        assert event.payload.order_id == UUID(int=7)

    async def test_domain_events(self) -> None:
        from anycqrs.requests.bootstrap import bootstrap

        seen = Seen()
        container = lagom.Container()
        container[Seen] = seen

        def domain(events: EventMap) -> None:
            events.bind(Stocked, OnStocked)
            events.bind(Restocked, OnRestocked)

        mediator = bootstrap(
            di_container=container,
            commands_mapper=lambda m: m.bind(PlaceOrder, RestockHandler),
            domain_events_mapper=domain,
        )
        await mediator.send(PlaceOrder(customer="A-1", total=1))
        assert seen.events == [Stocked(sku="A-1"), Restocked(sku="A-1")]

    async def test_saga_contexts_persist(self, tmp_path: Any) -> None:
        from anycqrs.saga.bootstrap import bootstrap
        from anycqrs.saga.storage import SqliteSagaStorage

        storage = SqliteSagaStorage(tmp_path / "sagas.db")
        try:

            def sagas(saga_map: anycqrs.saga.SagaMap) -> None:
                saga_map.bind(Counter, CounterSaga)
                saga_map.bind(StructCounter, StructSaga)

            mediator = bootstrap(sagas_mapper=sagas, saga_storage=storage)
            results = [r async for r in mediator.stream(Counter(order_id=1))]
            assert [r.response for r in results] == [1, 2]
            state = await storage.load_saga_state(results[-1].saga_id)
            assert state.context == {"order_id": 1, "steps": ["tick", "tick"]}
            assert from_dict(Counter, state.context) == Counter(order_id=1, steps=["tick"] * 2)
            results = [r async for r in mediator.stream(StructCounter(order_id=2))]
            state = await storage.load_saga_state(results[-1].saga_id)
            assert state.context == {"order_id": 2, "steps": ["tick"]}
        finally:
            storage.close()

    async def test_consumed_from_the_wire(self) -> None:
        seen = Seen()
        container = lagom.Container()
        container[Seen] = seen
        events = EventMap()
        events.bind(NotificationEvent[OrderPaidModel], RecordModel)
        mediator = EventMediator(events, container=container)
        model = OrderPaidModel(
            order_id=UUID(int=3),
            paid_at=datetime(2024, 5, 1, tzinfo=timezone.utc),
            amount=2.5,
            lines=[Line(sku="s", quantity=1)],
        )
        transport = InMemoryTransport()
        transport.put_event(NotificationEvent(payload=model, topic="orders"))
        bad = to_dict(NotificationEvent(payload=model, topic="orders"))
        bad["payload"]["amount"] = "2.5"
        transport.put(anycqrs.serialization.dumps(bad), event_name="OrderPaidModel")
        transport.close()
        with anyio.fail_after(10):
            await consume(mediator, transport)
        assert [e.payload for e in seen.events] == [model]
        (dead,) = transport.dead_letters
        assert "@ $.payload.amount" in str(dead.error)


def test_no_import_cost_when_unused() -> None:
    code = (
        "import sys, anycqrs, anycqrs.codecs, anycqrs.brokers, anycqrs.consumers\n"
        "from anycqrs import NotificationEvent, to_dict, from_dict\n"
        "import attrs\n"
        "@attrs.frozen\nclass P:\n    x: int\n"
        "from_dict(NotificationEvent[P], to_dict(NotificationEvent(payload=P(1), topic='t')))\n"
        "loaded = [m for m in ('pydantic', 'google.protobuf', 'zstandard') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
