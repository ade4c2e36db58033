"""The wire codec's fast path: msgspec, when it is installed.

`anycqrs.serialization` asks this module first. A type is taken here only
when everything in it decodes and encodes exactly as the cattrs converter
would: attrs classes (no converters, no custom `__init__`, field names as init
names), dataclasses, msgspec Structs, `int`, `float`, `str`, `bool`, `None`,
`UUID`, `datetime`, lists, tuples, sets, `str`- or `int`-keyed dicts and
`X | None`, generics resolved. Anything else (enums, bytes, unions of classes,
custom hooks...) is `None` here and goes to the converter.

Decoding is strict (`msgspec`'s `strict=True`: no `"42"` for an int, no `1.9`
or `true` for an int, no `12345` for a str; an int for a float is fine). The
one rule msgspec lacks, a naive datetime meaning UTC, is a check after
decoding: a naive datetime sends the value to the converter, which applies
it. Any msgspec error does the same, so the converter's message (every error,
naming the fields) is what the caller sees.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints
from uuid import UUID

import attrs

from .messages import NotificationEvent

__all__ = [
    "AVAILABLE",
    "MISS",
    "FastType",
    "builtins",
    "closed",
    "convert",
    "encode",
    "fast_keys",
    "fast_type",
    "json_encode",
    "load_dict",
    "open_plan",
    "seen",
    "set_enabled",
    "to_builtins",
]

_msgspec: Any
try:  # pragma: no cover - depends on the environment
    _msgspec = importlib.import_module("msgspec")
except ImportError:  # pragma: no cover
    _msgspec = None

AVAILABLE = _msgspec is not None
"""Whether msgspec is installed."""

Check = Callable[[Any], Any]
"""Truthy when every datetime inside the decoded value is timezone-aware."""

_SCALARS = frozenset({int, float, str, bool, type(None), UUID})
_OPEN_VALUES = frozenset({int, float, str, bool, type(None)})
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_MAPPINGS = frozenset({dict, Mapping, MutableMapping})


_MADE_AWARE = frozenset({(NotificationEvent, "event_timestamp")})
"""Datetime fields their class's `__attrs_post_init__` makes aware: not checked."""


class _Unsupported(Exception):
    """The type (or a part of it) is left to the converter."""


def _aware(value: datetime) -> bool:
    return value.tzinfo is not None


def _all(check: Check) -> Check:
    return lambda values: all(map(check, values))


def _all_values(check: Check) -> Check:
    return lambda mapping: all(map(check, mapping.values()))


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _fields(cls: type) -> list[str]:
    if attrs.has(cls):
        if "__attrs_init__" in cls.__dict__ or hasattr(cls, "__attrs_pre_init__"):
            raise _Unsupported(cls)  # msgspec would bypass the class's own __init__
        for field in attrs.fields(cls):
            if field.converter is not None or not field.init or field.alias != field.name:
                raise _Unsupported(cls)
        return [field.name for field in attrs.fields(cls)]
    if dataclasses.is_dataclass(cls):
        if not cls.__dataclass_params__.init:  # type: ignore[attr-defined]
            raise _Unsupported(cls)
        names = []
        for dc_field in dataclasses.fields(cls):
            if not dc_field.init:
                raise _Unsupported(cls)
            names.append(dc_field.name)
        return names
    if _msgspec is not None and issubclass(cls, _msgspec.Struct):
        return [field.name for field in _msgspec.structs.fields(cls)]
    raise _Unsupported(cls)


class _Scan:
    """One walk over a type: its aware-datetime check, and what else it found.

    `type` and `cls` raise `_Unsupported` for what the fast path leaves to
    the converter.
    """

    __slots__ = ("_active", "encodable", "int_keys", "open_fields")

    def __init__(self) -> None:
        self._active: set[type] = set()  # classes being walked: recursion stays with cattrs
        self.int_keys = False  # an int-keyed mapping: from_dict must accept "7" keys
        self.encodable = True  # False: tuples, sets or Any below the top level
        self.open_fields: list[str] = []  # top-level Any / TypeVar fields (checked per value)

    def type(self, tp: Any, params: Mapping[Any, Any], depth: int) -> Check | None:
        """The aware-datetime check of `tp` (`None`: nothing to check)."""
        if isinstance(tp, TypeVar):
            tp = params.get(tp, Any)
        if tp is Any:
            self.encodable = self.encodable and depth <= 1
            return None
        if tp in _SCALARS:
            return None
        if tp is datetime:
            return _aware
        origin, args = get_origin(tp), get_args(tp)
        if origin is Union or origin is types.UnionType:
            others = [arg for arg in args if arg is not type(None)]
            if len(others) != 1:
                raise _Unsupported(tp)  # msgspec and cattrs pick union members differently
            check = self.type(others[0], params, depth)
            return None if check is None else _optional(check)
        if origin in _SEQUENCES:
            self.encodable = self.encodable and origin is list  # cattrs keeps tuples and sets
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                raise _Unsupported(tp)
            check = self.type(args[0] if args else Any, params, depth + 1)
            return None if check is None else _all(check)
        if origin in _MAPPINGS:
            key, value = args or (str, Any)
            if key is not str and key is not int:
                raise _Unsupported(tp)
            self.int_keys = self.int_keys or key is int
            check = self.type(value, params, depth + 1)
            return None if check is None else _all_values(check)
        return self.cls(origin or tp, args, params, depth)

    def cls(
        self, cls: Any, args: tuple[Any, ...], params: Mapping[Any, Any], depth: int
    ) -> Check | None:
        """The aware-datetime check of a class (`args`: its generic arguments)."""
        return _combine(*self._needs(cls, args, params, depth))

    def _needs(
        self, cls: Any, args: tuple[Any, ...], params: Mapping[Any, Any], depth: int
    ) -> tuple[list[str], list[tuple[str, Check]]]:
        """Dotted attribute paths to datetimes through nested classes, and the
        checks of the other values holding some (lists, dicts, optionals)."""
        if not isinstance(cls, type) or cls in self._active:
            raise _Unsupported(cls)
        names = _fields(cls)
        resolved = [params.get(arg, arg) if isinstance(arg, TypeVar) else arg for arg in args]
        inner = dict(zip(getattr(cls, "__parameters__", ()), resolved, strict=False))
        try:
            hints = get_type_hints(cls)
        except Exception as exc:
            raise _Unsupported(cls) from exc  # unresolvable annotations: the converter decides
        self._active.add(cls)
        paths: list[str] = []
        checks: list[tuple[str, Check]] = []
        for name in names:
            hint = hints.get(name, Any)
            if isinstance(hint, TypeVar):
                hint = inner.get(hint, Any)
                if depth == 0:
                    self.open_fields.append(name)
            elif depth == 0 and hint is Any:
                self.open_fields.append(name)
            origin = get_origin(hint) or hint
            if (cls, name) in _MADE_AWARE:
                continue
            if hint is datetime:
                paths.append(name)
            elif isinstance(origin, type) and (attrs.has(origin) or _is_record(origin)):
                sub_paths, sub_checks = self._needs(origin, get_args(hint), inner, depth + 1)
                paths += [f"{name}.{path}" for path in sub_paths]
                checks += [(f"{name}.{path}", check) for path, check in sub_checks]
            else:
                check = self.type(hint, inner, depth + 1)
                if check is not None:
                    checks.append((name, check))
        self._active.discard(cls)
        return paths, checks


def _is_record(cls: type) -> bool:
    return dataclasses.is_dataclass(cls) or (
        _msgspec is not None and issubclass(cls, _msgspec.Struct)
    )


def _combine(paths: list[str], checks: list[tuple[str, Check]]) -> Check | None:
    """One check over every path: a single `attrgetter` for the datetimes
    reached through attributes (the common case costs one C call)."""
    parts: list[Check] = []
    if len(paths) == 1 and not checks:
        # msgspec decodes an offset as a `datetime.timezone`, always truthy: the
        # tzinfo itself is the answer, one C call and no Python frame
        return attrgetter(f"{paths[0]}.tzinfo")
    if len(paths) == 1:
        get_one = attrgetter(paths[0])
        parts.append(lambda value: get_one(value).tzinfo is not None)
    elif paths:
        get_all, tzinfo = attrgetter(*paths), attrgetter("tzinfo")
        parts.append(lambda value: None not in map(tzinfo, get_all(value)))
    for path, check in checks:
        get = attrgetter(path)
        parts.append(lambda value, get=get, check=check: check(get(value)))  # type: ignore[misc]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return lambda value: all(part(value) for part in parts)


MISS: Any = object()
"""What the fast path returns for a value it leaves to the converter."""


class FastType:
    """How the fast path decodes one target type.

    Args:
        target: the type (a class or a generic alias).
        check: the aware-datetime check (`None`: the type holds no datetime).
        int_keys: the type has an int-keyed mapping (string keys accepted
            from plain data too).
    """

    __slots__ = ("check", "decode", "str_keys", "target")

    def __init__(self, target: Any, check: Check | None, *, int_keys: bool) -> None:
        decoder = _msgspec.json.Decoder(target, strict=True)
        self.decode: Callable[[bytes | str], Any] = decoder.decode
        """JSON to the value (raises on what msgspec refuses)."""
        self.target = target
        self.str_keys = int_keys
        """Plain data may hold string keys for int-keyed mappings."""
        self.check = check
        """The aware-datetime check (`None`: nothing to check)."""

    def load(self, raw: bytes | str) -> Any:
        """JSON text to the value, or `MISS` (refused, or a naive datetime)."""
        try:
            value = self.decode(raw)
        except Exception:  # noqa: BLE001 - the converter names every error
            return MISS
        return value if self.check is None or self.check(value) else MISS


Seen = tuple[Any, Callable[[bytes | str], Any] | None, Check | None, FastType | None]
"""`(target, decode, check, fast_type(target))` (`decode` and `check` unpacked)."""

_enabled = AVAILABLE
_types: dict[Any, FastType | None] = {}
_by_id: dict[int, Seen] = {}
_Encoder = tuple[tuple[str, ...], bool]  # (open fields, int-keyed mapping inside)
_encoders: dict[type, _Encoder | None] = {}
_answers: dict[tuple[type, type], bool | None] = {}  # (class, its open field's class)
_closed: dict[type, bool] = {}  # fast class without open fields -> int-keyed mapping inside
_open: dict[type, tuple[Callable[[Any], Any], dict[type, bool]]] = {}
"""A class with one open field (`NotificationEvent.payload`): its getter and the
`_closed`-like answer per class of the value it holds."""
_UNSEEN: Any = object()


def set_enabled(enabled: bool) -> bool:
    """Turn the fast path on or off (on only when msgspec is installed);
    returns the previous setting."""
    global _enabled
    previous = _enabled
    _enabled = bool(enabled) and AVAILABLE
    _by_id.clear()  # the hot paths look in these first, without testing `_enabled`
    _closed.clear()
    _open.clear()
    return previous


# For the hot paths of `anycqrs.serialization` to inline `fast_type`, `fast_keys`,
# `encode`, `to_builtins` and `load_dict` (the caches are cleared by `set_enabled`).
seen: Callable[[int], Seen | None] = _by_id.get  # by `id(target)`: check `seen[0] is target`
closed: Mapping[type, bool] = _closed
open_plan: Callable[[type], tuple[Callable[[Any], Any], dict[type, bool]] | None] = _open.get
json_encode: Callable[[Any], bytes] = _msgspec.json.Encoder().encode if AVAILABLE else bytes
builtins: Callable[..., Any] = _msgspec.to_builtins if AVAILABLE else lambda obj: obj
convert: Callable[..., Any] = _msgspec.convert if AVAILABLE else lambda data, _: data


def fast_type(target: Any) -> FastType | None:
    """The fast decoder of `target`, built once; `None` when the converter
    must handle the type (or the fast path is off)."""
    if not _enabled:
        return None
    seen = _by_id.get(id(target))  # generic aliases hash in Python: look them up by identity
    if seen is not None and seen[0] is target:
        return seen[3]
    try:
        fast = _types[target]
    except KeyError:
        fast = _build(target)
        _types[target] = fast
    except TypeError:  # an unhashable annotation: not cached, not fast
        return None
    entry = (target, None, None, None) if fast is None else (target, fast.decode, fast.check, fast)
    _by_id[id(target)] = entry  # the tuple keeps `target` alive: its id stays its own
    return fast


def load_dict(target: Any, data: Any) -> Any:
    """`from_dict`'s fast path: the value, or `MISS`."""
    seen = _by_id.get(id(target))
    fast = seen[3] if seen is not None and seen[0] is target else fast_type(target)
    if fast is None:
        return MISS
    try:
        if fast.str_keys:
            value = _msgspec.convert(data, fast.target, str_keys=True)
        else:
            value = _msgspec.convert(data, fast.target)
    except Exception:  # noqa: BLE001 - the converter names every error
        return MISS
    check = fast.check
    return value if check is None or check(value) else MISS


def _build(target: Any) -> FastType | None:
    scan = _Scan()
    try:
        check = scan.type(target, {}, 0)
        return FastType(target, check, int_keys=scan.int_keys)
    except (_Unsupported, TypeError):
        return None


def _encoder(cls: type) -> _Encoder | None:
    """How the fast path encodes instances of `cls` (`None`: it does not)."""
    scan = _Scan()
    try:
        scan.cls(cls, (), {}, 0)
    except (_Unsupported, TypeError):
        scan.encodable = False
    encoder = (tuple(scan.open_fields), scan.int_keys) if scan.encodable else None
    _encoders[cls] = encoder
    return encoder


def _str_keys(obj: Any) -> bool | None:
    """`None` when the converter must encode `obj`, else whether an int-keyed
    mapping may be inside (msgspec then writes the keys as strings). Caches
    the answer in `closed` / `open_plan`."""
    cls = type(obj)
    encoder = _encoders.get(cls, _UNSEEN)
    if encoder is _UNSEEN:
        encoder = _encoder(cls)
    if encoder is None:
        return None
    fields: tuple[str, ...] = encoder[0]
    int_keys: bool = encoder[1]
    if not fields:
        _closed[cls] = int_keys
        return int_keys
    if len(fields) > 1:
        return _open_str_keys(obj, fields, int_keys)
    # `NotificationEvent.payload`: the answer per payload class, cached
    key = (cls, type(getattr(obj, fields[0])))
    answer: bool | None = _answers.get(key, _UNSEEN)
    if answer is _UNSEEN:
        answer = _answers[key] = _open_str_keys(obj, fields, int_keys)
    if answer is not None:
        _open.setdefault(cls, (attrgetter(fields[0]), {}))[1][key[1]] = answer
    return answer


def fast_keys(obj: Any) -> bool | None:
    """`_str_keys(obj)` as the hot paths get it: a cached answer (inlined
    there: this is the reference), else `_str_keys` when the fast path is on."""
    cls = type(obj)
    str_keys = _closed.get(cls)
    if str_keys is None:
        plan = _open.get(cls)
        if plan is not None:
            str_keys = plan[1].get(type(plan[0](obj)))
        if str_keys is None and _enabled:
            str_keys = _str_keys(obj)
    return str_keys


def _open_str_keys(obj: Any, fields: tuple[str, ...], int_keys: bool) -> bool | None:
    """`_str_keys` of `obj` given the classes in its open `fields`."""
    for name in fields:  # Any / type-variable fields: scalars, or classes without such fields
        value_cls = type(getattr(obj, name))
        if value_cls in _OPEN_VALUES:
            continue
        inner = _encoders.get(value_cls, _UNSEEN)
        if inner is _UNSEEN:
            inner = _encoder(value_cls)
        if inner is None or inner[0]:
            return None
        int_keys = int_keys or inner[1]
    return bool(int_keys)


def to_builtins(obj: Any) -> Any:
    """`obj` as plain data (what `to_dict` returns), or `MISS` when the
    converter must do it: its class holds an unsupported type, or a top-level
    `Any` / type-variable field holds something but a scalar or a class
    without such fields."""
    str_keys = fast_keys(obj)
    if str_keys is None:
        return MISS
    try:  # `str_keys=False` costs ≈ 2k instructions: passed only when needed
        return _msgspec.to_builtins(obj, str_keys=True) if str_keys else _msgspec.to_builtins(obj)
    except Exception:  # noqa: BLE001 - the converter says what is wrong
        return MISS


def encode(obj: Any) -> Any:
    """`obj` as compact JSON bytes, or `MISS` (see `to_builtins`)."""
    if fast_keys(obj) is None:
        return MISS
    try:
        return json_encode(obj)
    except Exception:  # noqa: BLE001 - the converter says what is wrong
        return MISS
