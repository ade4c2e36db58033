"""Helpers shared by the bootstrap functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, Union

M = TypeVar("M")

Mapper = Union[Callable[[M], object], M]
"""A callable that binds on the map it is given, or a ready map."""


def apply_mapper(map_type: Callable[[], M], *mappers: Mapper[M] | None) -> M:
    """Build one map from several mappers (callables or ready maps)."""
    result = map_type()
    for mapper in mappers:
        if mapper is None:
            continue
        if isinstance(mapper, type(result)):
            _merge(result, mapper)
        elif callable(mapper):
            mapper(result)
        else:
            raise TypeError(
                f"a mapper must be a callable taking a {type(result).__name__} "
                f"or a {type(result).__name__}, got {mapper!r}"
            )
    return result


def _merge(target: Any, source: Any) -> None:
    bind = target.bind
    for message_type, bound in source.items():
        if isinstance(bound, tuple):
            for handler in bound:
                bind(message_type, handler)
        else:
            bind(message_type, bound)


def run_startup(on_startup: Iterable[Callable[[], object]] | None) -> None:
    """Run the `on_startup` callables in order."""
    for callback in on_startup or ():
        callback()
