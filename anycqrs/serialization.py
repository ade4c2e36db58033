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
from uuid import UUID

import cattrs

from .errors import DeserializationError, SerializationError

__all__ = [
    "converter",
    "dumps",
    "from_dict",
    "from_json",
    "loads",
    "make_converter",
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


dumps: Callable[[Any], bytes]
"""Compact UTF-8 JSON of plain data (what :func:`to_dict` returns, or a broker
``Message.payload``); orjson when installed."""
if _orjson is not None:
    dumps = _orjson.dumps
    _loads: Callable[[bytes | str], Any] = _orjson.loads
else:  # pragma: no cover

    def dumps(data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode()

    _loads = json.loads


def to_json(obj: Any) -> bytes:
    """Serialize a message to UTF-8 JSON bytes (``to_dict`` then JSON)."""
    data = to_dict(obj)
    try:
        return dumps(data)
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
