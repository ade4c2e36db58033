"""Key renaming between snake_case field names and python-cqrs's camelCase,
directed by the type where it is known."""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Union, get_args, get_origin, get_type_hints
from uuid import UUID

import attrs

__all__ = ["camel", "to_camel", "to_snake"]

_MAPPINGS = (dict, Mapping, MutableMapping)
_SEQUENCES = (list, tuple, set, frozenset, Sequence)


def camel(name: str) -> str:
    """`order_id` -> `orderId` (what dataclass-wizard writes)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _unwrap(tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        others = [arg for arg in get_args(tp) if arg is not type(None)]
        return others[0] if len(others) == 1 else Any
    return tp


def _fields(cls: Any) -> dict[str, Any] | None:
    """Field name -> type of a record class (`None`: not a record)."""
    if not isinstance(cls, type):
        return None
    try:
        return _class_fields(cls)
    except TypeError:  # an unhashable class: not cached
        return _class_fields.__wrapped__(cls)


@functools.lru_cache(maxsize=512)
def _class_fields(cls: type) -> dict[str, Any] | None:
    # get_type_hints costs ~10 us: once per class (classes are kept alive by the cache)
    try:
        if attrs.has(cls) or dataclasses.is_dataclass(cls):
            hints = get_type_hints(cls)
            names = (
                [f.name for f in attrs.fields(cls)]
                if attrs.has(cls)
                else [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
            )
            return {name: hints.get(name, Any) for name in names}
        msgspec = sys.modules.get("msgspec")
        if msgspec is not None and issubclass(cls, msgspec.Struct):
            return {f.name: f.type for f in msgspec.structs.fields(cls)}
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and issubclass(cls, pydantic.BaseModel):
            return {name: info.annotation for name, info in cls.model_fields.items()}  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - unresolvable hints: rename blindly
        return None
    return None


_SCALAR, _UUID, _MAPPING, _SEQUENCE, _RECORD, _OPEN = range(6)
_LEAVES = frozenset({int, float, str, bool, type(None)})

Shape = tuple[int, Any]
"""How a type is walked: its kind and what the kind needs (the value type of a
mapping or sequence; `(name, camelCase key, type)` per field of a record)."""


def _shape(tp: Any) -> Shape:
    try:
        return _cached_shape(tp)
    except TypeError:  # an unhashable annotation: not cached
        return _cached_shape.__wrapped__(tp)


@functools.lru_cache(maxsize=1024)
def _cached_shape(tp: Any) -> Shape:
    tp = _unwrap(tp)
    if tp in _LEAVES:
        return _SCALAR, None
    if tp is UUID:
        return _UUID, None
    origin, args = get_origin(tp) or tp, get_args(tp)
    if origin in _MAPPINGS:
        return _MAPPING, args[1] if len(args) == 2 else Any
    if origin in _SEQUENCES:
        return _SEQUENCE, args[0] if args else Any
    fields = _fields(origin)
    if fields is None:
        return _OPEN, None
    return _RECORD, tuple((name, camel(name), hint) for name, hint in fields.items())


def to_camel(data: Any, tp: Any = Any) -> Any:
    """camelCase the keys of `data` (plain data of type `tp`): field names of
    records; the keys of `dict` fields stay. Where the type is unknown
    (`Any`), every object key is renamed. A `UUID` field is written as 32 hex
    digits, as dataclass-wizard does."""
    kind, detail = _shape(tp)
    if kind == _SCALAR:
        return data
    if kind == _UUID:
        return UUID(data).hex if isinstance(data, str) else data
    if isinstance(data, dict):
        if kind == _MAPPING:
            return {key: to_camel(value, detail) for key, value in data.items()}
        if kind == _RECORD:
            out = {}
            known = set()
            for name, key, hint in detail:
                if name in data:
                    out[key] = to_camel(data[name], hint)
                    known.add(name)
            for name, value in data.items():  # keys the class does not declare
                if name not in known:
                    out[camel(name) if isinstance(name, str) else name] = to_camel(value)
            return out
        return {camel(k) if isinstance(k, str) else k: to_camel(v) for k, v in data.items()}
    if isinstance(data, list):
        item_type = detail if kind == _SEQUENCE else Any
        return [to_camel(item, item_type) for item in data]
    return data


def to_snake(data: Any, tp: Any) -> Any:
    """The snake_case data of type `tp` from python-cqrs JSON: a record's
    field is read from its camelCase key, else its own name (python-cqrs's
    pydantic events write those); other keys are dropped."""
    kind, detail = _shape(tp)
    if kind <= _UUID:
        return data
    if kind == _MAPPING:
        if isinstance(data, dict):
            return {key: to_snake(value, detail) for key, value in data.items()}
        return data
    if kind == _SEQUENCE:
        return [to_snake(item, detail) for item in data] if isinstance(data, list) else data
    if kind == _RECORD and isinstance(data, dict):
        out = {}
        for name, key, hint in detail:
            if key in data:
                out[name] = to_snake(data[key], hint)
            elif name in data:
                out[name] = to_snake(data[name], hint)
        return out
    return data
