"""One converter for every message: ``to_dict`` / ``from_dict`` and JSON.

The converter is a :mod:`cattrs` converter (the orjson-flavoured one when
:mod:`orjson` is installed) with hooks for UUIDs and timezone-aware datetimes.
It handles attrs classes, dataclasses, nested messages, lists, dicts,
optionals and generics such as ``NotificationEvent[OrderPaid]``.

Example::

    data = anycqrs.to_dict(event)          # plain dict, JSON-ready
    again = anycqrs.from_dict(NotificationEvent[OrderPaid], data)
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar, cast
from uuid import UUID, SafeUUID

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from .errors import DeserializationError, SerializationError
from .messages import NotificationEvent

__all__ = ["converter", "from_dict", "from_json", "make_converter", "to_dict", "to_json"]

T = TypeVar("T")

_orjson: Any
try:  # pragma: no cover - depends on the environment
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover
    _orjson = None


def _parse_datetime(value: Any, _type: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _parse_uuid(value: Any, _type: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def make_converter() -> cattrs.Converter:
    """Build a fresh converter configured like :data:`converter` (useful to
    register your own hooks without touching the shared one)."""
    if _orjson is not None:
        from cattrs.preconf.orjson import make_converter as make_orjson_converter

        conv: cattrs.Converter = make_orjson_converter()
    else:  # pragma: no cover - orjson is installed in the test environment
        from cattrs.preconf.json import make_converter as make_json_converter

        conv = make_json_converter()
    conv.register_unstructure_hook(UUID, str)
    conv.register_structure_hook(UUID, _parse_uuid)
    conv.register_unstructure_hook(datetime, datetime.isoformat)
    conv.register_structure_hook(datetime, _parse_datetime)
    return conv


converter: cattrs.Converter = make_converter()
"""The converter behind :func:`to_dict` and :func:`from_dict`."""


def to_dict(obj: Any) -> Any:
    """Turn a message (or any attrs / dataclass value) into plain, JSON-ready data.

    Raises:
        SerializationError: the object holds something the converter can't handle.
    """
    try:
        return converter.unstructure(obj)
    except Exception as exc:
        raise SerializationError(f"Cannot serialize {type(obj).__qualname__}: {exc}") from exc


def _describe(exc: BaseException) -> list[str]:
    if isinstance(exc, cattrs.BaseValidationError):
        return cattrs.transform_error(exc)
    return [f"{exc} @ $"]


_NOTIFICATION_FIELDS = (
    "payload",
    "topic",
    "event_name",
    "key",
    "headers",
    "event_id",
    "event_timestamp",
)
_NOTIFICATION_DEFAULTS = frozenset(
    ["_", "__cl", "__c_cve", "__c_avn"]
    + [f"__c_{kind}_{name}" for name in _NOTIFICATION_FIELDS for kind in ("structure", "type")]
)


_new = object.__new__
_set = object.__setattr__
_UUID_UNKNOWN = SafeUUID.unknown


def _uuid(text: str) -> UUID:
    """``UUID(text)`` without its pure-Python parsing for the canonical
    (hyphenated or bare hex) form; anything else goes through ``UUID``."""
    digits = text.replace("-", "")
    if len(digits) != 32 or not digits.isalnum():
        return UUID(text)
    uuid = _new(UUID)
    _set(uuid, "int", int(digits, 16))  # what UUID.__init__ sets
    _set(uuid, "is_safe", _UUID_UNKNOWN)
    return uuid


def _same_code(a: Any, b: Any) -> bool:
    ca, cb = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        ca is not None
        and cb is not None
        and ca.co_code == cb.co_code
        and ca.co_consts == cb.co_consts
        and ca.co_names == cb.co_names
        and ca.co_varnames == cb.co_varnames
        and all(
            x is y or x == y or _same_code(x, y)
            for x, y in zip(a.__defaults__ or (), b.__defaults__ or (), strict=True)
        )
    )


def _plain_hook(hook: Any, cls: Any) -> Any:
    """The converter's ``hook`` for ``cls`` without cattrs' detailed
    validation (no error bookkeeping: faster) when ``hook`` is exactly what
    cattrs generates for ``cls`` by default; else ``hook`` itself. The plain
    variant's errors are not descriptive: callers retry with ``hook``."""
    if not attrs.has(cls):
        return hook
    try:
        detailed = make_dict_structure_fn(cls, converter)
        if not _same_code(hook, detailed):
            return hook
        return make_dict_structure_fn(cls, converter, _cattrs_detailed_validation=False)
    except Exception:  # noqa: BLE001 - cattrs cannot generate it: keep the hook
        return hook


def _notification_hook(cls: Any) -> Callable[[dict[str, Any]], Any] | None:
    """A faster equivalent of ``converter.get_structure_hook(cls)`` for a
    ``NotificationEvent[P]``, or ``None`` when ``cls`` is not eligible.

    The returned function builds the envelope directly and structures only
    the payload (with the converter's own hook for ``P``, so hooks users
    registered for payload classes still apply). It accepts only the plain
    wire shape :func:`to_dict` produces (all fields present, exact types) and
    raises on anything else: callers then run the regular hook, which gives
    the same result or the detailed error.

    It is only offered while the converter's hook for ``cls`` is the
    cattrs-generated one with this module's UUID / datetime hooks, plain
    ``str`` fields and no renamed or extra settings; otherwise ``None``.
    """
    origin = getattr(cls, "__origin__", None)
    if origin is not NotificationEvent:
        return None
    hook = converter.get_structure_hook(cls)
    code = getattr(hook, "__code__", None)
    if code is None or not code.co_filename.startswith(
        "<cattrs generated structure anycqrs.messages.NotificationEvent"
    ):
        return None
    defaults = dict(
        zip(code.co_varnames[1 : code.co_argcount], hook.__defaults__ or (), strict=False)
    )
    optional = getattr(defaults.get("__c_structure_key"), "__func__", None)
    if (
        defaults.keys() != _NOTIFICATION_DEFAULTS
        or not set(_NOTIFICATION_FIELDS) <= set(code.co_consts)
        or defaults["__cl"] is not NotificationEvent
        or defaults["__c_structure_topic"] is not str
        or defaults["__c_structure_event_name"] is not str
        or optional is not cattrs.BaseConverter._structure_optional
        or getattr(defaults["__c_structure_headers"], "__name__", "") != "structure_mapping"
        or defaults["__c_structure_event_id"] is not _parse_uuid
        or defaults["__c_structure_event_timestamp"] is not _parse_datetime
    ):
        return None
    payload_type = defaults["__c_type_payload"]
    structure_payload = _plain_hook(defaults["__c_structure_payload"], payload_type)

    def structure(data: dict[str, Any]) -> Any:
        topic = data.get("topic", "")
        event_name = data["event_name"]
        key = data.get("key")
        headers = data["headers"]
        event_id = data["event_id"]
        timestamp = data["event_timestamp"]
        if (
            type(topic) is not str
            or type(event_name) is not str
            or (key is not None and type(key) is not str)
            or type(headers) is not dict
            or type(event_id) is not str
            or type(timestamp) is not str
        ):
            raise TypeError("not the plain wire shape")
        for name, value in headers.items():
            if type(name) is not str or type(value) is not str:
                raise TypeError("not the plain wire shape")
        return NotificationEvent(
            payload=structure_payload(data["payload"], payload_type),
            topic=topic,
            event_name=event_name,
            key=key,
            headers=dict(headers),
            event_id=_uuid(event_id),
            event_timestamp=_parse_datetime(timestamp, datetime),
        )

    return structure


def from_dict(cls: type[T] | Any, data: Any) -> T:
    """Build ``cls`` from plain data produced by :func:`to_dict` (or JSON).

    Raises:
        DeserializationError: the data does not fit ``cls``; the message names
            every offending field, e.g. ``required field missing @ $.order_id``.
    """
    try:
        return cast(T, converter.structure(data, cls))
    except Exception as exc:
        raise DeserializationError(cls, _describe(exc)) from exc


_dumps: Callable[[Any], bytes]
if _orjson is not None:
    _dumps = _orjson.dumps
    _loads: Callable[[bytes | str], Any] = _orjson.loads
else:  # pragma: no cover

    def _dumps(data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode()

    _loads = json.loads


def to_json(obj: Any) -> bytes:
    """Serialize a message to UTF-8 JSON bytes (``to_dict`` then JSON)."""
    data = to_dict(obj)
    try:
        return _dumps(data)
    except Exception as exc:
        raise SerializationError(f"Cannot encode {type(obj).__qualname__} as JSON: {exc}") from exc


def loads(raw: bytes | str) -> Any:
    """Parse JSON, raising :class:`DeserializationError` on malformed input."""
    try:
        return _loads(raw)
    except Exception as exc:
        raise DeserializationError("JSON", [f"malformed JSON: {exc}"]) from exc


def from_json(cls: type[T] | Any, raw: bytes | str) -> T:
    """Parse JSON bytes/str into ``cls``; errors name the offending field."""
    result: T = from_dict(cls, loads(raw))
    return result
