"""Handler identity: the first half of an inbox key."""

from __future__ import annotations

from typing import Any

from ..events._fallback import EventHandlerFallback
from ..events._handler import EventHandler

__all__ = ["handler_identity", "identity"]


def handler_identity(handler: Any) -> str:
    """The inbox identity of a handler class (or binding): its
    ``inbox_name``, which is its class name unless the class sets
    ``inbox_name`` itself; an `EventHandlerFallback` counts as its primary.

    The identity is half of every inbox key, so renaming a handler class
    makes it handle again messages it already handled: set ``inbox_name``
    to the old name before renaming (as a saga step keeps its ``step_name``).

    Example:
        ```python
        class ShipOrder(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
            inbox_name = "shipping.ship-order"   # stable across renames
        ```
    """
    return identity(handler)


def identity(target: Any) -> str:
    """`handler_identity` (internal spelling)."""
    if isinstance(target, EventHandlerFallback):
        return identity(target.primary)
    if isinstance(target, type) and issubclass(target, EventHandler):
        return target.inbox_name
    name = getattr(target, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"Cannot name {target!r} for the inbox: bind a handler class")
    return name
