"""The Kafka wire format, without a broker."""

from __future__ import annotations

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import encode_message
from anycqrs.brokers.kafka._wire import (
    TRUNCATED_VALUE,
    Headers,
    Record,
    dead_letter_record,
    encode_messages,
    event_name,
    record_encoder,
    record_key,
    truncated_dead_letter,
)
from anycqrs.serialization import from_json

from ..broker_helpers import OrderPaid, paid


class Consumed:
    """Stands in for a consumed `confluent_kafka.Message` (its accessors only)."""

    def __init__(self, value: bytes | None, key: bytes | None, headers: list[object]) -> None:
        self._value, self._key, self._headers = value, key, headers

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[object]:
        return self._headers

    def topic(self) -> str:
        return "orders"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 41


def test_encode_message_without_key_or_headers() -> None:
    message = Message(message_name="N", topic="t", payload={"a": 1})
    topic, value, key, headers = encode_message(message)
    assert (topic, value, key) == ("t", b'{"a":1}', None)
    assert headers == [("event_name", "N"), ("message_id", str(message.message_id))]


def test_encode_message_keeps_event_headers_but_not_reserved_names() -> None:
    event = paid(1, "t", key="k", headers={"tenant": "acme", "event_name": "spoof"})
    _topic, value, key, headers = encode_message(Message.from_event(event))
    assert key == "k"
    assert headers is not None
    assert headers[0] == ("tenant", "acme")
    assert [name for name, _ in headers].count("event_name") == 1
    assert value is not None
    assert from_json(anycqrs.NotificationEvent[OrderPaid], value) == event


def _mixed() -> list[Message]:
    return [
        Message.from_event(paid(1, "t", key="k", headers={"tenant": "acme", "message_id": "x"})),
        Message(message_name="N", topic="u", payload={"a": 1}, headers={"n": 1}),  # type: ignore[dict-item]
        Message.from_event(paid(2, "t")),
    ]


def test_encode_messages_is_encode_message_of_each() -> None:
    messages = _mixed()
    records = list(encode_messages(messages))
    assert records == [encode_message(message) for message in messages]
    for message, (_topic, _value, _key, headers) in zip(messages, records, strict=True):
        assert headers is not None
        assert headers[-1] == ("message_id", str(message.message_id))
    assert records[1][3] == [
        ("n", "1"),
        ("event_name", "N"),
        ("message_id", str(messages[1].message_id)),
    ]
    assert list(encode_messages([])) == []


class _Codec:
    def __init__(self, transport_headers: bool) -> None:
        self.transport_headers = transport_headers

    def encode(self, message: Message, /) -> bytes:
        return message.message_name.encode()

    def decode(self, value: bytes, event_name: bytes | None, event_types: object) -> object:
        raise NotImplementedError


def test_record_encoder_with_a_codec_names_each_record() -> None:
    messages = _mixed()
    with_ids = list(record_encoder(_Codec(True))(messages))  # type: ignore[arg-type]
    expected: list[Record] = []
    for message in messages:
        headers: Headers = [(n, str(v)) for n, v in message.headers.items() if n != "message_id"]
        headers += [("event_name", message.message_name), ("message_id", str(message.message_id))]
        expected.append((message.topic, message.message_name.encode(), message.key, headers))
    assert with_ids == expected
    without = record_encoder(_Codec(False))(messages)  # type: ignore[arg-type]
    assert [headers for *_, headers in without] == [
        [("tenant", "acme"), ("message_id", "x")],
        [("n", "1")],
        None,
    ]


def test_event_name_header() -> None:
    assert event_name(Consumed(b"{}", None, [("a", b"1"), ("event_name", b"Paid")])) == b"Paid"
    assert event_name(Consumed(b"{}", None, [("event_name", None)])) is None
    assert event_name(Consumed(b"{}", None, None)) is None  # type: ignore[arg-type]


def test_dead_letter_record_keeps_the_original_and_says_why() -> None:
    msg = Consumed(b"body", b"k", [("event_name", b"Paid"), ("empty", None)])
    topic, value, key, headers = dead_letter_record(msg, ValueError("no"), 3, "orders.dlt")
    assert (topic, value, key) == ("orders.dlt", b"body", b"k")
    assert headers is not None
    found = dict(headers)
    assert found["event_name"] == b"Paid" and found["empty"] == b""
    assert found["anycqrs.error.type"] == b"ValueError"
    assert found["anycqrs.error.message"] == b"no"
    assert found["anycqrs.original.topic"] == b"orders"
    assert found["anycqrs.original.partition"] == b"2"
    assert found["anycqrs.original.offset"] == b"41"
    assert found["anycqrs.attempts"] == b"3"


def test_truncated_dead_letter_cuts_what_is_large_and_says_so() -> None:
    value = b"v" * 2_000_000
    msg = Consumed(
        value,
        b"k" * 2000,
        [("event_name", b"OrderPaid"), ("blob", b"b" * 5000), ("trace", b"t-1"), ("none", None)],
    )
    topic, cut, key, headers = truncated_dead_letter(
        msg, ValueError("bad"), 0, "orders.dlt", "MSG_SIZE_TOO_LARGE: too big"
    )
    named = dict(headers)
    assert topic == "orders.dlt" and key is None and cut == value[:TRUNCATED_VALUE]
    assert named["anycqrs.truncated"] == b"value,headers,key"
    assert named["anycqrs.original.size"] == b"2000000"
    assert named["anycqrs.rejected"] == b"MSG_SIZE_TOO_LARGE: too big"
    assert named["anycqrs.original.offset"] == b"41"
    assert (named["event_name"], named["trace"], named["none"]) == (b"OrderPaid", b"t-1", b"")
    assert "blob" not in named


def test_truncated_dead_letter_of_an_empty_value_keeps_the_key() -> None:
    _topic, value, key, headers = truncated_dead_letter(
        Consumed(None, b"k1", []), ValueError("x"), 1, "dlt", "INVALID_RECORD"
    )
    assert (value, key) == (None, b"k1")
    assert dict(headers)["anycqrs.original.size"] == b"0"


def test_record_key_keeps_undecodable_bytes_as_escapes() -> None:
    assert record_key(b"caf\xc3\xa9") == "caf\u00e9"
    assert record_key(b"o\xff1") == "o\\xff1"
