"""Context snapshots: a saga context to persisted plain data and back.

The one mechanism the engine uses to persist a context after a step, put it
back before a retry, a fallback or a compensation, and rebuild it on resume
and recovery. Each context class gets its converter hooks looked up once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import attrs

from ..serialization import converter, from_dict, to_dict

__all__ = ["Snapshots"]

Dump = Callable[[Any], Any]


def _field_names(cls: type) -> tuple[str, ...]:
    """The fields of an attrs class or a dataclass (`()` for anything else)."""
    if attrs.has(cls):
        return tuple(f.name for f in attrs.fields(cls))
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return ()  # pragma: no cover - contexts are attrs classes or dataclasses


class Snapshots:
    """Snapshots of saga contexts, with the converter's hooks cached per class.

    `dump` and `restore` take the fast path (the cached hook) and fall back to
    `to_dict` / `from_dict` only to raise their descriptive errors.
    """

    __slots__ = ("_dumpers", "_loaders")

    def __init__(self) -> None:
        self._dumpers: dict[type, Dump] = {}
        self._loaders: dict[type, tuple[Callable[[Any, type], Any], tuple[str, ...]]] = {}

    def dumper(self, cls: type) -> Dump:
        """The converter's unstructure hook of `cls` (for a hot loop that
        snapshots one context many times; on an error it calls `dump`)."""
        hook = self._dumpers.get(cls)
        if hook is None:
            try:
                hook = converter.get_unstructure_hook(cls)
            except Exception:  # noqa: BLE001 - to_dict names the problem when called
                hook = to_dict
            self._dumpers[cls] = hook
        return hook

    def dump(self, context: Any) -> Any:
        """`to_dict(context)`: the context as JSON-ready data.

        Raises:
            SerializationError: the context holds something the converter can't handle.
        """
        cls = type(context)
        hook = self._dumpers.get(cls) or self.dumper(cls)
        try:
            return hook(context)
        except Exception:  # noqa: BLE001 - the slow path names the problem
            return to_dict(context)

    def load(self, cls: type, data: Any) -> Any:
        """A new context of class `cls` from persisted `data`.

        Raises:
            DeserializationError: `data` does not fit `cls`.
        """
        hook = self._loader(cls)[0]
        try:
            return hook(data, cls)
        except Exception:  # noqa: BLE001 - from_dict raises the descriptive error
            return from_dict(cls, data)

    def restore(self, context: Any, data: Any) -> None:
        """Put `context` (in place: steps hold it) back to the persisted `data`.

        Raises:
            DeserializationError: `data` does not fit the context's class.
        """
        cls = type(context)
        hook, names = self._loaders.get(cls) or self._loader(cls)
        try:
            fresh = hook(data, cls)
        except Exception:  # noqa: BLE001 - from_dict raises the descriptive error
            fresh = from_dict(cls, data)
        for name in names or tuple(vars(fresh)):
            object.__setattr__(context, name, getattr(fresh, name))

    def put_back(self, context: Any, data: Any) -> None:
        """`restore`, skipped when `context` still dumps to `data` (a step
        that failed before changing it: a dump and a comparison, ≈ 0.5 µs,
        instead of structuring a fresh context and copying its fields,
        ≈ 3 µs). Mutated in place or replaced, any field that dumps
        differently makes the whole context restored.

        Raises:
            DeserializationError: `data` does not fit the context's class.
        """
        try:
            unchanged = self.dump(context) == data
        except Exception:  # noqa: BLE001 - not even dumpable: restore it
            unchanged = False
        if not unchanged:
            self.restore(context, data)

    def _loader(self, cls: type) -> tuple[Callable[[Any, type], Any], tuple[str, ...]]:
        cached = self._loaders.get(cls)
        if cached is None:
            cached = self._loaders[cls] = (converter.get_structure_hook(cls), _field_names(cls))
        return cached
