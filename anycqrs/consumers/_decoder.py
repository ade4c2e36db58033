"""From wire bytes to events: `EventDecoder` and the `Inbound` item that
carries one message through the lanes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _codec
from ..codecs import JsonCodec, MessageCodec
from ..errors import DeserializationError
from ..messages import NotificationEvent
from ..serialization import converter, from_dict, loads
from ._protocols import EventTypes

__all__ = ["EventDecoder", "Inbound"]

_NO_ID = "no event_id: an inbox-guarded consumer needs every message's id @ $.event_id"


class Inbound:
    """One consumed message on its way through the lanes.

    Built by a transport (usually with `EventDecoder.inbound`); the lanes read
    `event`, `error` and `lane`, the transport keeps its own bookkeeping in
    `raw` and `ticket`.

    Args:
        event: the decoded event (`None` when `error` is set).
        error: why the message could not be decoded (a poison message).
        lane: ordering hash: items with equal `lane` are handled in order.
        raw: the transport's message object.
        ticket: transport bookkeeping (partition, delivery tag, generation).
    """

    __slots__ = ("error", "event", "handled", "lane", "raw", "ticket")

    def __init__(
        self, event: Any, error: Exception | None, lane: int, raw: Any, ticket: Any = None
    ) -> None:
        self.event = event
        """The decoded event (`None` when `error` is set)."""
        self.error = error
        """Why the message could not be decoded (a poison message)."""
        self.lane = lane
        """Ordering hash: messages with equal `lane` are handled in order."""
        self.raw = raw
        """The transport's message object."""
        self.ticket: Any = ticket
        """Transport bookkeeping (partition, delivery tag...)."""
        self.handled = False
        """Free for the transport: e.g. set in `settle` to track commit order."""

    def __repr__(self) -> str:
        state = "poison" if self.error is not None else type(self.event).__name__
        return f"<Inbound lane={self.lane} {state} raw={self.raw!r}>"


class EventDecoder:
    """Builds the `NotificationEvent[P]` a wire message carries, routed by
    its event name; one per consumer run.

    With msgspec installed (and an `event_name` header), the JSON bytes are
    decoded straight into the bound `NotificationEvent[P]` by one msgspec
    decoder per event name. Otherwise, and for every message that decoder
    refuses, the JSON is parsed and structured by the converter's hook for
    the bound class (looked up once per event name: the generic `from_dict`
    dispatch costs about as much as the structuring itself); a payload that
    does not fit is re-run through `from_dict` so the `DeserializationError`
    names the offending fields.

    With another `codec` (an `anycqrs.codecs.MessageCodec`, e.g.
    `anycqrs.codecs.PythonCqrsCodec`), every message is decoded by
    `codec.decode`; the transport's `topic` and `key` fill what the event
    lacks.

    Args:
        event_types: the bindings (an `anycqrs.EventMap`, the sink's `event_map`).
        codec: the wire format (default: JSON, `anycqrs.codecs.JsonCodec`).
        require_event_id: a message without an ``event_id`` field is poison
            (an inbox keys on it; default: it gets a new random id).

    Example:
        ```python
        decode = EventDecoder(mediator.event_map)
        event = decode(b'{"payload": {"order_id": 1}}', "OrderPaid", "orders", "1")
        item = decode.inbound(b"not json", "OrderPaid", "orders", None, lane=0, raw=record)
        assert item.error is not None   # a poison message, not an exception
        ```
    """

    __slots__ = (
        "_codec",
        "_decode",
        "_event_types",
        "_fast",
        "_hooks",
        "_json_wire",
        "_notification_type",
        "_require_id",
    )

    def __init__(
        self,
        event_types: EventTypes,
        codec: MessageCodec | None = None,
        *,
        require_event_id: bool = False,
    ) -> None:
        self._event_types = event_types
        self._notification_type = event_types.notification_type
        self._hooks: dict[str, tuple[Any, Callable[[Any, Any], Any], _codec.FastType | None]] = {}
        self._fast: dict[str | bytes, tuple[str, Any, Callable[[bytes], Any], Any]] = {}
        """The fast decoders by event name as it arrives (header bytes or str):
        `(name, class, decode, check)` (a `FastType`'s msgspec decode and its
        aware-datetime check, `FastType.load` inlined by the hot paths), for
        names whose class msgspec decodes."""
        self._require_id = require_event_id
        self._codec = codec
        self._json_wire = codec is None or isinstance(codec, JsonCodec)
        self._decode: Callable[[bytes | None, str | None, str | None, str | None], Any] = (
            self._json if self._json_wire else self._with_codec
        )

    def __call__(
        self, value: bytes | None, event_name: str | None, topic: str | None, key: str | None
    ) -> Any:
        """Decode one message.

        `event_name` comes from the transport headers (`None` when absent);
        `topic` and `key` fill the event's missing fields.

        Raises:
            DeserializationError: empty or malformed input, no event name, or
                a payload that does not fit the bound class.
            UnknownEventName: nothing is bound under the name.
        """
        return self._decode(value, event_name, topic, key)

    def _with_codec(
        self, value: bytes | None, event_name: str | None, topic: str | None, key: str | None
    ) -> Any:
        """Decode one message with the codec."""
        if value is None:
            raise DeserializationError(NotificationEvent, ["empty message value @ $"])
        assert self._codec is not None
        event = self._codec.decode(value, event_name, self._event_types)
        if topic is not None and not event.topic:
            object.__setattr__(event, "topic", topic)  # the event is new: nobody holds it yet
        if key is not None and event.key is None:
            object.__setattr__(event, "key", key)
        return event

    def _json(
        self, value: bytes | None, event_name: str | None, topic: str | None, key: str | None
    ) -> Any:
        """Decode one JSON message (the default format).

        `event_name` comes from the transport headers; when absent the JSON's
        own `event_name` field is used. `topic` and `key` fill the JSON's
        missing fields.

        Raises:
            DeserializationError: empty or malformed JSON, no event name, or
                a payload that does not fit the bound class.
            UnknownEventName: nothing is bound under the name.
        """
        if value is None:
            raise DeserializationError(NotificationEvent, ["empty message value @ $"])
        if self._require_id and b'"event_id"' not in value:
            raise DeserializationError(NotificationEvent, [_NO_ID])
        if event_name is not None:
            try:
                fast = self._entry(event_name)[2]
            except DeserializationError:  # unknown name: raised below, after the JSON checks
                fast = None
            if fast is not None:
                event = fast.load(value)
                if event is not _codec.MISS and _fill(event, value, topic, key):
                    return event
        data = loads(value, NotificationEvent)
        if not isinstance(data, dict):
            raise DeserializationError(
                NotificationEvent, [f"expected a JSON object, got {type(data).__name__} @ $"]
            )
        if event_name is None:
            event_name = data.get("event_name")
            if not isinstance(event_name, str):
                raise DeserializationError(
                    NotificationEvent, ["no event_name header and no event_name field @ $"]
                )
        if self._require_id and "event_id" not in data:
            raise DeserializationError(NotificationEvent, [_NO_ID])
        if topic is not None and "topic" not in data:
            data["topic"] = topic
        if key is not None and "key" not in data:
            data["key"] = key
        cls, hook, _ = self._entry(event_name)
        try:
            return hook(data, cls)
        except Exception:  # noqa: BLE001 - from_dict raises the descriptive error
            return from_dict(cls, data)

    def _entry(self, event_name: str) -> tuple[Any, Callable[[Any, Any], Any], Any]:
        """The bound class, its converter hook and its fast decoder (`None`
        without msgspec), built once per event name and class."""
        cls = self._event_types.notification_type(event_name)
        entry = self._hooks.get(event_name)
        if entry is None or entry[0] is not cls:
            hook = converter.get_structure_hook(cls)
            entry = self._hooks[event_name] = (cls, hook, _codec.fast_type(cls))
        return entry

    def _remember(self, raw_name: str | bytes, name: str | None) -> None:
        """Keep the fast decoder of a name that just decoded (if msgspec has one
        and the wire is JSON)."""
        if name is None or not self._json_wire:
            return
        cls, _, fast = self._entry(name)
        if fast is not None:
            self._fast[raw_name] = (name, cls, fast.decode, fast.check)

    def batch(
        self, key_text: Callable[[bytes], str] | None = None
    ) -> Callable[[Inbound, Any, Any, Any, Any], None]:
        """A function decoding one message into the `Inbound` a transport
        built for it (its `event`, or its `error` for a poison message, as
        `inbound` would set them), positional: `(item, value, event_name,
        topic, key)`, for one batch (a lane's chunk) decoded without awaiting
        in between. The fast decoders are checked against the bindings once,
        here, instead of once per message (nothing can rebind while the
        batch is decoded). Call it anew for every batch.

        Args:
            key_text: how a `bytes` key becomes the event's `key` (e.g. the
                Kafka transport's `\\xNN` escaping), called only when the
                key is needed (the JSON has none); without it a `bytes` key
                is decoded as strict UTF-8, as `inbound` does.
        """
        fast = self._fast
        for raw_name, (name, cls, _, _) in list(fast.items()):
            try:
                bound = self._notification_type(name)
            except Exception:  # noqa: BLE001 - unbound since: the general path decides
                bound = None
            if bound is not cls:
                del fast[raw_name]
        get, require, general, miss = fast.get, self._require_id, self.inbound, _codec.MISS

        def fill(item: Inbound, value: Any, event_name: Any, topic: Any, key: Any) -> None:
            entry = get(event_name)
            if (
                entry is not None
                and value is not None
                and (key_text is not None or type(key) is not bytes)
                and (not require or b'"event_id"' in value)
            ):
                try:  # `FastType.load` inlined: a refused value goes the general way
                    event = entry[2](value)
                except Exception:  # noqa: BLE001 - the general path names the error
                    event = miss
                else:
                    check = entry[3]
                    if check is not None and not check(event):
                        event = miss
                if event is not miss and (
                    # `_fill` inlined for its common case: the JSON had topic and key
                    ((topic is None or event.topic) and (key is None or event.key is not None))
                    or _fill(event, value, topic, key, key_text)
                ):
                    item.event = event
                    return
            if key_text is not None and type(key) is bytes:
                key = key_text(key)
            decoded = general(value, event_name, topic, key, lane=item.lane, raw=item.raw)
            item.event, item.error = decoded.event, decoded.error

        return fill

    def inbound(
        self,
        value: bytes | None,
        event_name: str | bytes | None,
        topic: str | None,
        key: str | bytes | None,
        *,
        lane: int,
        raw: Any,
        ticket: Any = None,
    ) -> Inbound:
        """Decode one message into an `Inbound`; a message that cannot be
        decoded becomes a poison item (its `error` set) instead of raising.

        `event_name` and `key` may be UTF-8 bytes (as header values and
        record keys arrive); bytes that are not UTF-8 make a poison item too.
        """
        # the hot path, flattened: a known name, msgspec, the JSON complete
        fast = self._fast.get(event_name) if event_name is not None else None
        if (
            fast is not None
            and value is not None
            and type(key) is not bytes
            and (not self._require_id or b'"event_id"' in value)
        ):
            name, cls, decode, check = fast
            try:
                bound = self._notification_type(name)
            except Exception:  # noqa: BLE001 - unbound since: the general path decides
                bound = None
            if bound is cls:
                try:
                    event = decode(value)
                except Exception:  # noqa: BLE001 - the general path names the error
                    event = _codec.MISS
                else:
                    if check is not None and not check(event):
                        event = _codec.MISS
                if event is not _codec.MISS and (
                    # `_fill` inlined for its common case: the JSON had topic and key
                    ((topic is None or event.topic) and (key is None or event.key is not None))
                    or _fill(event, value, topic, key)
                ):
                    return Inbound(event, None, lane, raw, ticket)
        raw_name = event_name
        try:
            if event_name is not None and not isinstance(event_name, str):
                event_name = bytes(event_name).decode()
            if key is not None and not isinstance(key, str):
                key = bytes(key).decode()
            event = self._decode(value, event_name, topic, key)
            if raw_name is not None:  # (again: the class may have been rebound)
                self._remember(raw_name, event_name)
        except DeserializationError as exc:
            return Inbound(None, exc, lane, raw, ticket)
        except UnicodeDecodeError as exc:
            error = DeserializationError(NotificationEvent, [f"{exc} @ headers"])
            return Inbound(None, error, lane, raw, ticket)
        return Inbound(event, None, lane, raw, ticket)


def _fill(
    event: Any,
    value: bytes,
    topic: str | None,
    key: str | bytes | None,
    key_text: Callable[[bytes], str] | None = None,
) -> bool:
    """Fill the transport's `topic` / `key` into a fast-decoded event whose
    JSON lacked them (the event is new: nobody holds it yet). `False` when the
    bytes name such a field though the event has the default (an explicit
    empty value, or a payload field of that name): the general path decides."""
    if topic is not None and not event.topic:
        if b'"topic"' in value:
            return False
        object.__setattr__(event, "topic", topic)
    if key is not None and event.key is None:
        if b'"key"' in value:
            return False
        if key_text is not None and type(key) is bytes:
            key = key_text(key)
        object.__setattr__(event, "key", key)
    return True
