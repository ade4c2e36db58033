"""One codec for every message: `to_dict` / `from_dict` and JSON.

The general path is a `cattrs` converter (the orjson-flavoured one when
`orjson` is installed) with hooks for UUIDs and timezone-aware datetimes.
It handles attrs classes, dataclasses, nested messages, lists, dicts,
optionals and generics such as `NotificationEvent[OrderPaid]`, and, when
their libraries are in use, pydantic v2 models (`model_dump(mode="json")` /
`model_validate`, the model's own rules) and msgspec Structs (strict). Their
validation errors name the field like the converter's own
(`Input should be a valid integer @ $.payload.order_id`); neither library
is imported by anycqrs.

When `msgspec` is installed it is the fast path: types it encodes and decodes
exactly like the converter (attrs classes, dataclasses and Structs made of
scalars, UUIDs, datetimes, lists and dicts, generics included) go straight
through it, one decoder per type; everything else, and every input it
refuses, goes to the converter, whose `DeserializationError` lists each
offending field. `set_fast_path(False)` forces the converter.

Decoding is strict, the same for application code (`from_dict`) and for
messages consumed from a broker: a value must already have its field's type.
The only conversions made are the lossless ones JSON needs: an integer for a
`float` field, an ISO 8601 string for a `datetime` (naive means UTC), a
UUID string for a `UUID`, a list for a tuple or set, a string key for an
`int`-keyed dict. `"42"` for an `int`, `1.9` for an `int`, `true` for an
`int` or `12345` for a `str` are refused with a `DeserializationError` naming
the field. Datetimes are written in ISO 8601 / RFC 3339, a zero UTC offset as
`Z`.

Example:
    ```python
    data = anycqrs.to_dict(event)          # plain dict, JSON-ready
    again = anycqrs.from_dict(NotificationEvent[OrderPaid], data)
    ```
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any, TypeVar, get_args, get_origin
from uuid import UUID

import cattrs
from cattrs.v import format_exception

from . import _codec, _models
from .errors import DeserializationError, SerializationError

__all__ = [
    "converter",
    "dumps",
    "from_dict",
    "from_json",
    "loads",
    "make_converter",
    "set_fast_path",
    "to_dict",
    "to_json",
]

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
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        return UUID(value)
    raise TypeError(f"expected a UUID string, got {_kind(value)}")


def _format_datetime(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text  # as msgspec writes it


def _strict_int(value: Any, _type: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected an integer, got {_kind(value)}")


def _strict_float(value: Any, _type: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number, got {_kind(value)}")


def _strict_str(value: Any, _type: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {_kind(value)}")


def _strict_bool(value: Any, _type: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {_kind(value)}")


def _number_key(key: Any, key_type: type) -> Any:
    """A JSON object key for an `int` / `float` keyed mapping (JSON keys are
    strings; `to_dict` writes them with `str`)."""
    if isinstance(key, key_type) and not isinstance(key, bool):
        return key
    if isinstance(key, str):
        try:
            return key_type(key)
        except ValueError:
            pass
    what = "an integer" if key_type is int else "a number"
    raise TypeError(f"expected {what} key, got {_kind(key)}")


def _is_number_keyed(type_: Any) -> bool:
    args = get_args(type_)
    return (
        get_origin(type_) in (dict, Mapping, MutableMapping)
        and len(args) == 2
        and args[0] in (int, float)
    )


def _number_keyed_hook(conv: cattrs.Converter) -> Callable[[Any], Any]:
    def factory(type_: Any) -> Callable[[Any, Any], Any]:
        key_type, value_type = get_args(type_)
        value_hook = conv.get_structure_hook(value_type)

        def structure(value: Any, _type: Any) -> dict[Any, Any]:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected an object, got {_kind(value)}")
            return {_number_key(k, key_type): value_hook(v, value_type) for k, v in value.items()}

        return structure

    return factory


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if len(repr(value)) <= 40 else type(value).__name__


def make_converter() -> cattrs.Converter:
    """Build a fresh converter configured like `converter` (useful to
    register your own hooks without touching the shared one)."""
    if _orjson is not None:
        from cattrs.preconf.orjson import make_converter as make_orjson_converter

        conv: cattrs.Converter = make_orjson_converter()
    else:  # pragma: no cover - orjson is installed in the test environment
        from cattrs.preconf.json import make_converter as make_json_converter

        conv = make_json_converter()
    # Strict scalars: no silent coercion ("42" -> 42, 1.9 -> 1, true -> 1, 12345 -> "12345").
    # The one widening allowed is an integer for a float field.
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook_factory(_is_number_keyed, _number_keyed_hook(conv))
    conv.register_unstructure_hook(UUID, str)
    conv.register_structure_hook(UUID, _parse_uuid)
    conv.register_unstructure_hook(datetime, _format_datetime)
    conv.register_structure_hook(datetime, _parse_datetime)
    _models.register(conv)  # pydantic models and msgspec Structs, when those are in use
    return conv


converter: cattrs.Converter = make_converter()
"""The general converter behind `to_dict` and `from_dict` (the fast path
does not see hooks registered on it: see `set_fast_path`)."""


def set_fast_path(enabled: bool) -> bool:
    """Use msgspec for the types it handles (the default when it is installed),
    or, with `False`, the converter for everything (e.g. after registering
    hooks on the shared `converter`). Returns the previous setting.

    Example:
        ```python
        anycqrs.serialization.set_fast_path(False)
        anycqrs.serialization.converter.register_structure_hook(Money, parse_money)
        ```
    """
    return _codec.set_enabled(enabled)


# The fast path's caches and msgspec's functions, for the hot paths below to
# inline `_codec.fast_keys` / `_codec.load_dict` (a Python call each, saved).
_closed = _codec.closed
_closed_keys = _codec.closed.get
_open_plan = _codec.open_plan
_json_encode = _codec.json_encode
_to_builtins = _codec.builtins
_convert = _codec.convert
_seen = _codec.seen
_MISS = _codec.MISS


def to_dict(obj: Any) -> Any:
    """Turn a message (or any attrs / dataclass value) into plain, JSON-ready data.

    Raises:
        SerializationError: the object holds something the converter can't handle.
    """
    cls = type(obj)  # `_codec.to_builtins`, inlined
    str_keys = _closed_keys(cls)
    if str_keys is None and (plan := _open_plan(cls)) is not None:
        str_keys = plan[1].get(type(plan[0](obj)))
    if str_keys is not None:
        try:  # `str_keys=False` costs ≈ 2k instructions: passed only when needed
            return _to_builtins(obj, str_keys=True) if str_keys else _to_builtins(obj)
        except Exception:  # noqa: BLE001 - the general path says what is wrong
            pass
    return _to_dict(obj)


def _to_dict(obj: Any) -> Any:
    """`to_dict` when the cached answers do not send `obj` to msgspec."""
    data = _codec.to_builtins(obj)
    if data is not _codec.MISS:
        return data
    try:
        return converter.unstructure(obj)
    except Exception as exc:
        raise SerializationError(f"Cannot serialize {type(obj).__qualname__}: {exc}") from exc


def _format(exc: BaseException, type_: Any) -> str:
    message = str(exc)
    if isinstance(exc, TypeError) and message.startswith("expected "):
        return message  # our strict hooks say what they expected and got
    if isinstance(exc, _models.FieldError):
        return message  # pydantic's or msgspec's own words
    return format_exception(exc, type_)


def _describe(exc: BaseException) -> list[str]:
    if isinstance(exc, cattrs.BaseValidationError):
        return cattrs.transform_error(exc, format_exception=_format)
    return [f"{exc} @ $"]


def from_dict(cls: type[T] | Any, data: Any) -> T:
    """Build `cls` from plain data produced by `to_dict` (or JSON).

    Raises:
        DeserializationError: the data does not fit `cls`; the message names
            every offending field, e.g. `required field missing @ $.order_id`.
    """
    seen = _seen(id(cls))  # `_codec.load_dict`, inlined: one call less per message
    if seen is not None and seen[0] is cls and (fast := seen[3]) is not None:
        try:
            value: T = _convert(data, cls, str_keys=True) if fast.str_keys else _convert(data, cls)
        except Exception:  # noqa: BLE001 - the converter below names every error
            pass
        else:
            check = seen[2]
            if check is None or check(value):
                return value
        return _structure(cls, data)  # type: ignore[no-any-return]
    value = _codec.load_dict(cls, data)
    return _structure(cls, data) if value is _codec.MISS else value


def _structure(cls: Any, data: Any) -> Any:
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        raise DeserializationError(cls, _describe(exc)) from exc


dumps: Callable[[Any], bytes]
"""Compact UTF-8 JSON of plain data (what `to_dict` returns, or a broker
`Message.payload`); orjson when installed."""
if _orjson is not None:
    dumps = _orjson.dumps
    _loads: Callable[[bytes | str], Any] = _orjson.loads
else:  # pragma: no cover

    def dumps(data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode()

    _loads = json.loads


def to_json(obj: Any) -> bytes:
    """Serialize a message to UTF-8 JSON bytes (`to_dict` then JSON)."""
    cls = type(obj)  # `_codec.encode`, inlined: one call less per message
    plan = _open_plan(cls)  # events first: `NotificationEvent.payload` is open
    if (type(plan[0](obj)) in plan[1]) if plan is not None else cls in _closed:
        try:
            return _json_encode(obj)
        except Exception:  # noqa: BLE001 - the general path says what is wrong
            pass
    return _to_json(obj)


def _to_json(obj: Any) -> bytes:
    """`to_json` when the cached answers do not send `obj` to msgspec."""
    raw: bytes = _codec.encode(obj)
    if raw is not _codec.MISS:
        return raw
    data = to_dict(obj)
    try:
        return dumps(data)
    except Exception as exc:
        raise SerializationError(f"Cannot encode {type(obj).__qualname__} as JSON: {exc}") from exc


def loads(raw: bytes | str, target: Any = Any) -> Any:
    """Parse JSON, raising `DeserializationError` on malformed input.

    Args:
        raw: the JSON text.
        target: the type the JSON is meant to become, named by the error
            (`typing.Any` when there is none).
    """
    try:
        return _loads(raw)
    except Exception as exc:
        raise DeserializationError(target, [f"malformed JSON: {exc} @ $"]) from exc


def from_json(cls: type[T] | Any, raw: bytes | str) -> T:
    """Parse JSON bytes/str into `cls`; errors name the offending field."""
    seen = _seen(id(cls))  # the fast path, inlined: one call less per message
    if seen is None or seen[0] is not cls:
        first: T = _from_json(cls, raw)
        return first
    decode = seen[1]
    if decode is not None:
        try:
            value: T = decode(raw)
        except Exception:  # noqa: BLE001 - the converter below names every error
            pass
        else:
            check = seen[2]
            if check is None or check(value):
                return value
    return _structure(cls, loads(raw, cls))  # type: ignore[no-any-return]


def _from_json(cls: Any, raw: bytes | str) -> Any:
    """`from_json` of a type not looked up yet (or not cached: unhashable)."""
    fast = _codec.fast_type(cls)  # cached: the next call takes the inlined path
    value = _MISS if fast is None else fast.load(raw)
    return _structure(cls, loads(raw, cls)) if value is _MISS else value
