"""The registry of declared adapters: which container types are wrapped in
which adapter, detected by type (private)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ._dependency_injector import DependencyInjectorContainer
from ._di import DiContainer
from ._dishka import DishkaContainer

ADAPTERS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("dishka", "AsyncContainer", DishkaContainer),
    ("dependency_injector.containers", "Container", DependencyInjectorContainer),
    ("di", "Container", DiContainer),
)
"""(module, class, adapter): an instance of `module.class` is wrapped in
`adapter`. A module that was never imported cannot have made the object, so
nothing is imported to check."""


def detect(container: object) -> Any | None:
    """The declared adapter around `container`, or `None` if none applies."""
    for module_name, class_name, adapter in ADAPTERS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(container, getattr(module, class_name)):
            return adapter(container)
    return None
