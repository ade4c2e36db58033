from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anycqrs
from anycqrs import _codec
from anycqrs.errors import DeserializationError, SerializationError
from anycqrs.serialization import from_json, loads, make_converter, set_fast_path, to_json

T = TypeVar("T")

CODECS = ["fast", "general"] if _codec.AVAILABLE else ["general"]


@pytest.fixture(autouse=True, scope="module", params=CODECS)
def codec(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs on the msgspec fast path and on the cattrs converter."""
    previous = set_fast_path(request.param == "fast")
    yield request.param
    set_fast_path(previous)


@attrs.frozen
class Line:
    sku: str
    quantity: int


@dataclasses.dataclass(frozen=True)
class Address:
    city: str
    zip_code: str | None = None


@attrs.frozen
class OrderPlaced:
    order_id: UUID
    placed_at: datetime
    lines: list[Line]
    address: Address
    tags: dict[str, int] = attrs.field(factory=dict)
    note: str | None = None


@attrs.frozen
class Box(Generic[T]):
    item: T


@attrs.frozen
class CreateOrder(anycqrs.Request):
    order_id: UUID
    lines: list[Line]


def _order(**overrides: object) -> OrderPlaced:
    values: dict[str, object] = {
        "order_id": uuid4(),
        "placed_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "lines": [Line("apple", 2), Line("pear", 1)],
        "address": Address("Lyon"),
        "tags": {"priority": 1},
    }
    values.update(overrides)
    return OrderPlaced(**values)  # type: ignore[arg-type]


def test_round_trip_of_nested_notification_event() -> None:
    event = anycqrs.NotificationEvent(
        payload=_order(), topic="orders", key="k-1", headers={"trace": "abc"}
    )
    data = anycqrs.to_dict(event)
    assert data["payload"]["order_id"] == str(event.payload.order_id)
    assert data["event_timestamp"].endswith("Z")  # RFC 3339, as msgspec writes it
    assert data["event_name"] == "OrderPlaced"
    assert anycqrs.from_dict(anycqrs.NotificationEvent[OrderPlaced], data) == event


def test_json_round_trip() -> None:
    event = anycqrs.NotificationEvent(payload=_order(), topic="orders")
    raw = to_json(event)
    assert isinstance(raw, bytes)
    assert from_json(anycqrs.NotificationEvent[OrderPlaced], raw) == event


def test_requests_and_generics_round_trip() -> None:
    request = CreateOrder(order_id=uuid4(), lines=[Line("a", 1)])
    assert anycqrs.from_dict(CreateOrder, anycqrs.to_dict(request)) == request
    boxed = Box(item=Line("a", 3))
    assert anycqrs.from_dict(Box[Line], anycqrs.to_dict(boxed)) == boxed


def test_naive_datetimes_become_utc() -> None:
    data = anycqrs.to_dict(_order())
    data["placed_at"] = "2026-01-02T03:04:05"
    restored = anycqrs.from_dict(OrderPlaced, data)
    assert restored.placed_at.tzinfo is not None
    assert restored.placed_at.utcoffset() == timedelta(0)
    event = anycqrs.NotificationEvent(payload=1, event_timestamp=datetime(2026, 1, 1))
    assert event.event_timestamp.tzinfo is timezone.utc


def test_missing_field_is_named() -> None:
    data = anycqrs.to_dict(_order())
    del data["lines"][1]["quantity"]
    del data["address"]
    with pytest.raises(DeserializationError) as info:
        anycqrs.from_dict(OrderPlaced, data)
    message = str(info.value)
    assert "$.lines[1].quantity" in message
    assert "$.address" in message
    assert not isinstance(info.value, KeyError)
    assert any("quantity" in line for line in info.value.errors)


def test_wrong_type_is_named() -> None:
    data = anycqrs.to_dict(_order())
    data["order_id"] = "not-a-uuid"
    with pytest.raises(DeserializationError, match=r"\$\.order_id"):
        anycqrs.from_dict(OrderPlaced, data)


def test_bad_payload_of_a_notification_names_the_generic() -> None:
    with pytest.raises(DeserializationError, match=r"NotificationEvent\[OrderPlaced\]"):
        anycqrs.from_dict(anycqrs.NotificationEvent[OrderPlaced], {"payload": {}})


def test_malformed_json() -> None:
    with pytest.raises(DeserializationError, match="malformed JSON"):
        loads(b"{not json")


def test_unserializable_object() -> None:
    class Weird:
        __slots__ = ()

    with pytest.raises(SerializationError, match="Weird"):
        to_json(Box(item=Weird()))


def test_make_converter_is_independent() -> None:
    conv = make_converter()
    conv.register_unstructure_hook(Line, lambda line: f"{line.sku}x{line.quantity}")
    assert conv.unstructure(Line("a", 2)) == "ax2"
    assert anycqrs.to_dict(Line("a", 2)) == {"sku": "a", "quantity": 2}


lines = st.builds(Line, st.text(max_size=20), st.integers(-(2**40), 2**40))
orders = st.builds(
    OrderPlaced,
    order_id=st.uuids(),
    placed_at=st.datetimes(timezones=st.just(timezone.utc)),
    lines=st.lists(lines, max_size=5),
    address=st.builds(Address, st.text(max_size=10), st.none() | st.text(max_size=5)),
    tags=st.dictionaries(st.text(max_size=5), st.integers(-1000, 1000), max_size=3),
    note=st.none() | st.text(max_size=20),
)


@given(orders, st.none() | st.text(min_size=1, max_size=8))
def test_property_round_trip(order: OrderPlaced, key: str | None) -> None:
    event = anycqrs.NotificationEvent(payload=order, topic="t", key=key)
    assert (
        anycqrs.from_dict(anycqrs.NotificationEvent[OrderPlaced], anycqrs.to_dict(event)) == event
    )
    assert from_json(anycqrs.NotificationEvent[OrderPlaced], to_json(event)) == event


@attrs.frozen
class Scalars:
    count: int
    name: str
    ratio: float
    flag: bool
    ids: dict[int, str] = attrs.Factory(dict)


GOOD = {"count": 1, "name": "a", "ratio": 0.5, "flag": True}


class TestStrictDecoding:
    """`from_dict` (and so every broker decoder) never coerces silently."""

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("count", 1.9, "expected an integer, got float 1.9 @ $.count"),
            ("count", "42", "expected an integer, got str '42' @ $.count"),
            ("count", True, "expected an integer, got bool True @ $.count"),
            ("count", 123456789012345678901234567890.0, "expected an integer, got float"),
            ("name", 12345, "expected a string, got int 12345 @ $.name"),
            ("name", UUID(int=5), "expected a string, got UUID @ $.name"),
            ("ratio", "0.5", "expected a number, got str '0.5' @ $.ratio"),
            ("flag", 1, "expected true or false, got int 1 @ $.flag"),
            ("ids", {"x": "a"}, "expected an integer key, got str 'x' @ $.ids"),
        ],
    )
    def test_refuses_coercion(self, field: str, value: object, message: str) -> None:
        with pytest.raises(anycqrs.errors.DeserializationError, match=re.escape(message)):
            anycqrs.from_dict(Scalars, {**GOOD, field: value})

    def test_a_thirty_digit_integer_from_json(self, codec: str) -> None:
        big = 123456789012345678901234567890
        raw = b'{"count": %d, "name": "a", "ratio": 1, "flag": false}' % big
        if codec == "fast":  # msgspec reads the integer exactly
            assert from_json(Scalars, raw).count == big
        else:  # orjson reads it as a float, which an int field refuses
            with pytest.raises(anycqrs.errors.DeserializationError, match=r"\$\.count"):
                from_json(Scalars, raw)

    def test_lossless_conversions_are_allowed(self) -> None:
        value = anycqrs.from_dict(Scalars, {**GOOD, "ratio": 2, "ids": {"7": "seven"}})
        assert value.ratio == 2.0 and isinstance(value.ratio, float)
        assert value.ids == {7: "seven"}
        assert anycqrs.from_dict(Scalars, anycqrs.to_dict(value)) == value

    def test_uuid_needs_a_string(self) -> None:
        with pytest.raises(anycqrs.errors.DeserializationError, match="expected a UUID string"):
            anycqrs.from_dict(UUID, 5)


class TestDeserializationErrorTarget:
    """`DeserializationError.target` is always a type."""

    def test_malformed_json_names_the_type_asked_for(self) -> None:
        with pytest.raises(DeserializationError) as caught:
            from_json(Scalars, b"{not json")
        assert caught.value.target is Scalars
        assert str(caught.value).startswith("Cannot build Scalars: malformed JSON")

    def test_untyped_json_is_any(self) -> None:
        with pytest.raises(DeserializationError) as caught:
            loads(b"[1,")
        assert caught.value.target is Any
        assert str(caught.value).startswith("Cannot build Any: malformed JSON")

    def test_a_string_target_is_a_programming_error(self) -> None:
        with pytest.raises(TypeError, match="target type"):
            DeserializationError("JSON", ["x"])

    def test_unknown_event_name_targets_notification_event(self) -> None:
        error = anycqrs.errors.UnknownEventName("nope")
        assert error.target is anycqrs.NotificationEvent


class Colour(enum.Enum):
    RED = "red"


@attrs.frozen
class Painted:
    colour: Colour


@attrs.frozen
class Clamped:
    value: int = attrs.field(converter=abs)


class TestFastPath:
    """Which types msgspec takes, and that both paths agree on the wire."""

    pytestmark = pytest.mark.skipif(not _codec.AVAILABLE, reason="msgspec is not installed")

    def test_events_and_generics_take_the_fast_path(self, codec: str) -> None:
        event_type = anycqrs.NotificationEvent[OrderPlaced]
        fast = _codec.fast_type(event_type)
        assert (fast is not None) is (codec == "fast")
        assert _codec.fast_type(event_type) is fast  # one decoder per type
        event = anycqrs.NotificationEvent(payload=_order())
        assert (_codec.encode(event) is not _codec.MISS) is (codec == "fast")

    def test_what_msgspec_would_treat_differently_stays_with_the_converter(self) -> None:
        assert _codec.fast_type(Painted) is None
        assert _codec.fast_type(Clamped) is None
        assert _codec.encode(Painted(Colour.RED)) is _codec.MISS
        assert _codec.to_builtins(anycqrs.NotificationEvent(payload={"a": b"x"})) is _codec.MISS
        assert anycqrs.from_dict(Clamped, {"value": -3}) == Clamped(3)  # converter ran
        assert anycqrs.from_dict(Painted, {"colour": "red"}) == Painted(Colour.RED)

    def test_a_naive_datetime_from_json_means_utc(self) -> None:
        data = anycqrs.to_dict(anycqrs.NotificationEvent(payload=_order()))
        data["payload"]["placed_at"] = "2026-01-02T03:04:05"
        data["event_timestamp"] = "2026-01-02T03:04:05"
        event = from_json(anycqrs.NotificationEvent[OrderPlaced], anycqrs.serialization.dumps(data))
        assert event.payload.placed_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        assert event.event_timestamp.tzinfo is timezone.utc

    def test_a_naive_datetime_from_dict_means_utc_once_the_type_is_cached(self) -> None:
        aware = anycqrs.to_dict(_order())
        assert anycqrs.from_dict(OrderPlaced, aware).placed_at.tzinfo is not None  # cached now
        naive = {**aware, "placed_at": "2026-01-02T03:04:05"}
        placed_at = anycqrs.from_dict(OrderPlaced, naive).placed_at
        assert placed_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        with pytest.raises(DeserializationError, match=r"\$\.lines"):
            anycqrs.from_dict(OrderPlaced, {**aware, "lines": "apple"})

    def test_a_value_msgspec_refuses_after_its_class_was_cached(self) -> None:
        """The inlined fast path of `to_json` / `to_dict` hands over to the
        general one when msgspec raises (attrs does not check field types)."""
        to_json(Line("apple", 2))
        anycqrs.to_dict(Line("apple", 2))
        event = anycqrs.NotificationEvent(payload=Line("apple", 2))
        to_json(event)
        anycqrs.to_dict(event)
        odd = Line("apple", object())  # type: ignore[arg-type]
        with pytest.raises(SerializationError, match="Line"):
            to_json(odd)
        with pytest.raises(SerializationError, match="NotificationEvent"):
            to_json(anycqrs.NotificationEvent(payload=odd))
        assert anycqrs.to_dict(odd)["sku"] == "apple"  # the converter passes unknown values on
        assert anycqrs.to_dict(anycqrs.NotificationEvent(payload=odd))["payload"]["sku"] == "apple"

    def test_structs_on_both_paths(self, codec: str) -> None:
        import msgspec

        class Point(msgspec.Struct):
            x: int
            at: datetime

        point = Point(1, datetime(2026, 1, 1, tzinfo=timezone.utc))
        # the converter has hooks for Structs too (anycqrs._models)
        assert from_json(Point, to_json(point)) == point
        assert anycqrs.from_dict(Point, anycqrs.to_dict(point)) == point
        with pytest.raises(DeserializationError, match=r"Point.*@ \$\.x"):
            anycqrs.from_dict(Point, {"x": "1", "at": "2026-01-01T00:00:00Z"})

    @given(orders, st.none() | st.text(min_size=1, max_size=8))
    def test_both_paths_write_the_same_data(self, order: OrderPlaced, key: str | None) -> None:
        event = anycqrs.NotificationEvent(payload=order, topic="t", key=key, headers={"h": "v"})
        previous = set_fast_path(True)
        try:
            fast_dict, fast_json = anycqrs.to_dict(event), to_json(event)
            set_fast_path(False)
            assert anycqrs.to_dict(event) == fast_dict
            assert loads(to_json(event)) == loads(fast_json)
            assert from_json(anycqrs.NotificationEvent[OrderPlaced], fast_json) == event
        finally:
            set_fast_path(previous)
