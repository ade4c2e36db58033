"""Every public name is on an API page, and no docstring uses reST.

The API pages (docs/api/*.md) list their objects one `::: path` directive at a time;
a public name added to a module's `__all__` without a line there would be missing
from the reference (and a cross-reference to it would break the strict build). A
module-level directive counts for the whole module (docs/api/errors.md renders
`anycqrs.errors` with its members). Directives inside `<!-- -->` (pages waiting for a
module to land) don't count.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import anycqrs

ROOT = Path(__file__).parent.parent
DIRECTIVE = re.compile(r"^::: (?P<path>\S+)(?P<options>(?:\n[ \t]+.*)*)", re.M)
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj):`")


def _public_modules() -> list[str]:
    names = ["anycqrs"]
    for info in pkgutil.walk_packages(anycqrs.__path__, "anycqrs."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _lookup(path: str) -> Any:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise LookupError(path)


def _documented() -> tuple[set[int], set[str]]:
    """Ids of the objects the API pages render, and the modules rendered whole."""
    objects: set[int] = set()
    whole: set[str] = set()
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        text = re.sub(r"<!--.*?-->", "", page.read_text(encoding="utf-8"), flags=re.S)
        for match in DIRECTIVE.finditer(text):
            obj = _lookup(match["path"])
            objects.add(id(obj))
            if isinstance(obj, ModuleType) and "members: false" not in match["options"]:
                whole.add(obj.__name__)
                objects.update(id(getattr(obj, attr)) for attr in obj.__all__)
    return objects, whole


def test_every_public_name_is_on_an_api_page() -> None:
    objects, whole = _documented()
    missing = []
    for name in _public_modules():
        module = importlib.import_module(name)
        if name in whole:
            continue
        for attr in module.__all__:
            value = getattr(module, attr)
            if isinstance(value, ModuleType):
                continue
            if id(value) not in objects:
                missing.append(f"{name}.{attr}")
    assert not missing, f"add a `::: path` line to a page in docs/api/ for: {missing}"


PACKAGE = Path(anycqrs.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("source", SOURCES, ids=[str(p.relative_to(PACKAGE)) for p in SOURCES])
def test_docstrings_have_no_rest(source: Path) -> None:
    """Google style only: no `:class:` roles, no `Example::` literal blocks. Write
    `Name` in backticks or a cross-reference `[Name][anycqrs.path.Name]`, and
    examples as fenced blocks in an `Example:` section."""
    text = source.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        assert not ROLE.search(line), f"{source.name}:{number}: a reST role: {line.strip()}"
        assert not re.search(r"\w::[ \t]*$", line), f"{source.name}:{number}: a '::' block"
