"""The registry of declared adapters: which container types are wrapped in
which adapter, detected by type (private)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ._dependency_injector import DependencyInjectorContainer
from ._di import DiContainer
from ._dishka import DishkaContainer

ADAPTERS: tuple[
    tuple[str, str, Callable[[Any], Any], Callable[[BaseException], Any] | None], ...
] = (
    ("dishka", "AsyncContainer", DishkaContainer, DishkaContainer.missing),
    (
        "dependency_injector.containers",
        "Container",
        DependencyInjectorContainer,
        DependencyInjectorContainer.missing,
    ),
    ("di", "Container", DiContainer, None),
)
"""(module, class, adapter, missing): an instance of `module.class` is
wrapped in `adapter`; `missing(error)` names the dependency the library's
"can't build" `error` is about (`None`: not such an error). A module that was
never imported cannot have made the object, so nothing is imported to check."""


def detect(container: object) -> Any | None:
    """The declared adapter around `container`, or `None` if none applies."""
    for module_name, class_name, adapter, _ in ADAPTERS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(container, getattr(module, class_name)):
            return adapter(container)
    return None


def missing(error: BaseException) -> Any | None:
    """The dependency a declared adapter's library says it cannot build
    (`error` is its "can't build" error), else `None`."""
    for module_name, _, _, named in ADAPTERS:
        if named is not None and module_name in sys.modules:
            found = named(error)
            if found is not None:
                return found
    return None
