"""attrs validators and converters shared by every policy and option class."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["exception_types", "non_negative", "positive_int"]


def positive_int(_inst: Any, attribute: attrs.Attribute[int], value: int) -> None:
    """attrs validator: an ``int >= 1``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def non_negative(_inst: Any, attribute: attrs.Attribute[float], value: float) -> None:
    """attrs validator: a number ``>= 0`` (infinity allowed, NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def exception_types(value: Any) -> tuple[type[BaseException], ...]:
    """attrs converter: an exception class or an iterable of them, as a tuple.

    Raises:
        TypeError: an item is not an ``Exception`` subclass.
    """
    if isinstance(value, type):
        types: tuple[Any, ...] = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        types = tuple(value)
    else:
        raise TypeError(f"expected an Exception subclass or a tuple of them, got {value!r}")
    for item in types:
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise TypeError(f"expected Exception subclasses, got {item!r}")
    return types
