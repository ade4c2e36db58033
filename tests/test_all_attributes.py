"""Every public module of anycqrs declares its surface in ``__all__``.

Modelled on anyio's ``tests/test_all_attributes.py``: a public module is one
whose dotted path has no ``_private`` part. Each declares ``__all__``; every
name listed exists and is public; every public class or function the module
defines itself is listed (nothing public by accident, nothing missing).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import anycqrs


def public_modules() -> list[str]:
    names = ["anycqrs"]
    for info in pkgutil.walk_packages(anycqrs.__path__, "anycqrs."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


PUBLIC = public_modules()


def test_walks_the_whole_package() -> None:
    assert {"anycqrs", "anycqrs.errors", "anycqrs.saga", "anycqrs.brokers"} <= set(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_declared_and_complete(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    declared = getattr(module, "__all__", None)
    assert isinstance(declared, (list, tuple)), f"{name} has no __all__"
    assert len(declared) == len(set(declared)), f"{name}.__all__ lists a name twice"
    for attribute in declared:
        assert not attribute.startswith("_"), f"{name}.__all__ lists private {attribute}"
        assert hasattr(module, attribute), f"{name}.__all__ lists {attribute}, which is missing"
    for attribute, value in vars(module).items():
        if attribute.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if getattr(value, "__module__", None) == name:
            assert attribute in declared, f"{name}.{attribute} is public but not in __all__"
