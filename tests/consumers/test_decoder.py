"""`EventDecoder`: wire bytes to `NotificationEvent[P]`, poison messages as items."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

import anycqrs
from anycqrs import _codec
from anycqrs.consumers import EventDecoder, Inbound
from anycqrs.errors import DeserializationError, UnknownEventName
from anycqrs.events import EventMediator
from anycqrs.serialization import dumps, set_fast_path, to_dict

from .consumer_helpers import OrderPaid, RecordPaid, paid


@pytest.fixture(autouse=True, params=["fast", "general"] if _codec.AVAILABLE else ["general"])
def codec(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every decoder test runs with the msgspec fast path and without it."""
    previous = set_fast_path(request.param == "fast")
    yield request.param
    set_fast_path(previous)


def _body(order_id: object = 1, **extra: object) -> bytes:
    return json.dumps({"payload": {"order_id": order_id}, **extra}).encode()


def _filled(
    fill: Callable[[Inbound, Any, Any, Any, Any], None],
    value: bytes,
    name: bytes,
    topic: str,
    key: str | bytes | None,
    lane: int = 0,
    raw: object = None,
    ticket: object = None,
) -> Inbound:
    """An undecoded item as a transport builds it, decoded by `fill` (`batch()`)."""
    item = Inbound(None, None, lane, raw, ticket)
    fill(item, value, name, topic, key)
    return item


class TestDecode:
    """Calling the decoder: routes by name, fills topic and key, raises on bad input."""

    def test_round_trip_of_an_encoded_event(self, mediator: EventMediator) -> None:
        event = paid(7, key="k")
        decoded = EventDecoder(mediator.event_map)(
            dumps(to_dict(event)), event.event_name, None, None
        )
        assert decoded == event

    def test_header_name_topic_and_key_fill_the_json(self, mediator: EventMediator) -> None:
        event = EventDecoder(mediator.event_map)(_body(3), "OrderPaid", "orders", "k3")
        assert isinstance(event, anycqrs.NotificationEvent)
        assert event.payload == OrderPaid(3)
        assert (event.topic, event.key, event.event_name) == ("orders", "k3", "OrderPaid")

    def test_json_event_name_is_used_without_a_header(self, mediator: EventMediator) -> None:
        event = EventDecoder(mediator.event_map)(_body(4, event_name="OrderPaid"), None, "t", None)
        assert event.payload == OrderPaid(4)

    @pytest.mark.parametrize(
        ("value", "name", "message"),
        [
            (None, "OrderPaid", "empty message value"),
            (b"[1, 2]", "OrderPaid", "expected a JSON object"),
            (_body(1), None, "no event_name header"),
            (_body("one"), "OrderPaid", "order_id"),
        ],
    )
    def test_bad_input_raises_deserialization_error(
        self, mediator: EventMediator, value: bytes | None, name: str | None, message: str
    ) -> None:
        with pytest.raises(DeserializationError, match=message):
            EventDecoder(mediator.event_map)(value, name, "t", None)

    def test_an_explicit_empty_topic_or_null_key_is_kept(self, mediator: EventMediator) -> None:
        raw = _body(3, topic="", key=None)
        event = EventDecoder(mediator.event_map)(raw, "OrderPaid", "orders", "k3")
        assert (event.topic, event.key) == ("", None)

    def test_a_payload_field_named_like_the_event_fields(self, mediator: EventMediator) -> None:
        raw = json.dumps({"payload": {"order_id": 3, "topic": "x", "key": "y"}}).encode()
        event = EventDecoder(mediator.event_map)(raw, "OrderPaid", "orders", "k3")
        assert (event.payload, event.topic, event.key) == (OrderPaid(3), "orders", "k3")

    def test_decodes_many_messages_alike(self, mediator: EventMediator, codec: str) -> None:
        decode = EventDecoder(mediator.event_map)
        fast = _codec.fast_type(anycqrs.NotificationEvent[OrderPaid])
        assert (fast is not None) is (codec == "fast")  # the fast path is really taken
        events = [decode(_body(n), "OrderPaid", "orders", str(n)) for n in range(3)]
        assert [(e.payload.order_id, e.key, e.topic) for e in events] == [
            (0, "0", "orders"),
            (1, "1", "orders"),
            (2, "2", "orders"),
        ]
        assert len({e.event_id for e in events}) == 3

    def test_unknown_name(self, mediator: EventMediator) -> None:
        with pytest.raises(UnknownEventName):
            EventDecoder(mediator.event_map)(_body(1), "Nope", "t", None)


class TestInbound:
    """`EventDecoder.inbound`: never raises for bad input, builds poison items."""

    def test_good_message(self, mediator: EventMediator) -> None:
        item = EventDecoder(mediator.event_map).inbound(
            _body(5), b"OrderPaid", "t", b"k", lane=3, raw="raw", ticket="ticket"
        )
        assert isinstance(item, Inbound)
        assert (item.error, item.lane, item.raw, item.ticket) == (None, 3, "raw", "ticket")
        assert item.event.payload == OrderPaid(5)
        assert item.event.key == "k"
        assert not item.handled
        assert "lane=3" in repr(item)

    @pytest.mark.parametrize(
        ("value", "name", "key"),
        [
            (b"{not json", "OrderPaid", None),
            (_body(1), "Unbound", None),
            (_body(1), b"\xff\xfe", None),
            (_body(1), "OrderPaid", b"\xff"),
        ],
    )
    def test_bad_message_is_a_poison_item(
        self, mediator: EventMediator, value: bytes, name: str | bytes, key: bytes | None
    ) -> None:
        item = EventDecoder(mediator.event_map).inbound(value, name, "t", key, lane=0, raw=None)
        assert item.event is None
        assert isinstance(item.error, DeserializationError)
        assert "poison" in repr(item)

    def test_repeated_names_keep_decoding_each_message(self, mediator: EventMediator) -> None:
        """The decoder remembers a name after its first message: later ones,
        good or bad, still get their own event or error."""
        decode = EventDecoder(mediator.event_map)
        first = decode.inbound(_body(1), b"OrderPaid", "t", "a", lane=0, raw=None)
        bad = decode.inbound(_body("x"), b"OrderPaid", "t", "b", lane=0, raw=None)
        empty = decode.inbound(None, b"OrderPaid", "t", None, lane=0, raw=None)
        bytes_key = decode.inbound(_body(2), b"OrderPaid", "t", b"\xff", lane=0, raw=None)
        second = decode.inbound(_body(3), b"OrderPaid", "t", None, lane=0, raw=None)
        assert (first.event.payload, first.event.key) == (OrderPaid(1), "a")
        assert isinstance(bad.error, DeserializationError) and "order_id" in str(bad.error)
        assert isinstance(empty.error, DeserializationError)
        assert isinstance(bytes_key.error, DeserializationError)
        assert (second.event.payload, second.event.key, second.event.topic) == (
            OrderPaid(3),
            None,
            "t",
        )

    def test_a_name_bound_anew_decodes_into_the_new_class(self) -> None:
        @attrs.frozen
        class Renamed:
            order_id: int
            note: str = "new"

        events = anycqrs.EventMap()
        events.bind(anycqrs.NotificationEvent[OrderPaid], RecordPaid)
        decode = EventDecoder(events)
        old = decode.inbound(_body(1), b"OrderPaid", "t", None, lane=0, raw=None)
        assert old.event.payload == OrderPaid(1)
        names = events._by_name  # rebinding a name is not public API: simulate it
        names["OrderPaid"] = anycqrs.NotificationEvent[Renamed]
        new = decode.inbound(_body(2), b"OrderPaid", "t", None, lane=0, raw=None)
        assert new.event.payload == Renamed(2)
        del names["OrderPaid"]
        gone = decode.inbound(_body(3), b"OrderPaid", "t", None, lane=0, raw=None)
        assert isinstance(gone.error, DeserializationError)


class TestBatch:
    """`EventDecoder.batch`: decodes into a transport's items, bindings checked once."""

    def test_decodes_like_inbound(self, mediator: EventMediator) -> None:
        decode = EventDecoder(mediator.event_map)
        one = decode.batch()
        items = [
            _filled(one, _body(1), b"OrderPaid", "t", "a", 3, "raw", "ticket"),
            _filled(one, _body(2), b"OrderPaid", "t", None, 4, None, None),
            _filled(one, _body("x"), b"OrderPaid", "t", "b", 5, None, None),
            _filled(one, _body(3, key="own"), b"OrderPaid", "t", "k", 6, None, None),
        ]
        first, second, bad, own = items
        assert (first.event.payload, first.event.key, first.lane) == (OrderPaid(1), "a", 3)
        assert (first.raw, first.ticket, first.error, first.handled) == (
            "raw",
            "ticket",
            None,
            False,
        )
        assert (second.event.payload, second.event.key, second.event.topic) == (
            OrderPaid(2),
            None,
            "t",
        )
        assert isinstance(bad.error, DeserializationError) and bad.event is None
        assert own.event.key == "own"

    def test_a_name_bound_anew_between_batches(self) -> None:
        @attrs.frozen
        class Renamed:
            order_id: int
            note: str = "new"

        events = anycqrs.EventMap()
        events.bind(anycqrs.NotificationEvent[OrderPaid], RecordPaid)
        decode = EventDecoder(events)
        old = _filled(decode.batch(), _body(1), b"OrderPaid", "t", None, 0, None, None)
        again = _filled(decode.batch(), _body(1), b"OrderPaid", "t", None, 0, None, None)
        assert old.event.payload == again.event.payload == OrderPaid(1)
        names = events._by_name  # rebinding a name is not public API: simulate it
        names["OrderPaid"] = anycqrs.NotificationEvent[Renamed]
        new = _filled(decode.batch(), _body(2), b"OrderPaid", "t", None, 0, None, None)
        assert new.event.payload == Renamed(2)
        del names["OrderPaid"]
        gone = _filled(decode.batch(), _body(3), b"OrderPaid", "t", None, 0, None, None)
        assert isinstance(gone.error, DeserializationError)

    def test_bytes_keys_become_text_only_when_needed(
        self, mediator: EventMediator, codec: str
    ) -> None:
        texts: list[bytes] = []

        def key_text(key: bytes) -> str:
            texts.append(key)
            return key.decode(errors="backslashreplace")

        decode = EventDecoder(mediator.event_map)
        decode.inbound(_body(0), b"OrderPaid", "t", None, lane=0, raw=None)  # name learnt
        one = decode.batch(key_text)
        own = _filled(one, _body(1, key="json"), b"OrderPaid", "t", b"k1", 0, None, None)
        filled = _filled(one, _body(2), b"OrderPaid", "t", b"o\xff1", 0, None, None)
        general = _filled(one, _body("x"), b"OrderPaid", "t", b"k3", 0, None, None)
        assert (own.event.key, filled.event.key) == ("json", "o\\xff1")
        assert isinstance(general.error, DeserializationError)
        needed = [b"o\xff1", b"k3"] if codec == "fast" else [b"k1", b"o\xff1", b"k3"]
        assert texts == needed
        strict = EventDecoder(mediator.event_map).batch()
        assert isinstance(
            _filled(strict, _body(4), b"OrderPaid", "t", b"\xff").error, DeserializationError
        )
