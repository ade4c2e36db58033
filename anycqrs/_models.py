"""Converter hooks for model libraries: pydantic v2 models and msgspec Structs.

Neither library is imported here: a class can only be a pydantic model or a
Struct when its library was imported already, so the predicates look in
`sys.modules`. A pydantic model is dumped with `model_dump(mode="json",
by_alias=True)` and built with `model_validate_json`, strict like the rest of
anycqrs (JSON-mode strict: `"42"` is no integer, an ISO string is a
datetime) unless the model's config sets `strict=False`. A Struct goes
through `msgspec.to_builtins` / `msgspec.convert` (strict). Their
validation errors become cattrs errors naming each field, which
`anycqrs.serialization.from_dict` turns into a `DeserializationError`
(`Input should be a valid integer @ $.payload.order_id`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError

__all__ = ["FieldError", "register"]

_dumps: Callable[[Any], bytes]
try:  # pragma: no cover - depends on the environment
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover
    import json

    def _dumps(data: Any) -> bytes:
        return json.dumps(data).encode()


class FieldError(ValueError):
    """One field a model library refused (the message is the library's)."""


def _base(module: str, name: str) -> Any:
    lib = sys.modules.get(module)
    return None if lib is None else getattr(lib, name, None)


def _is_pydantic(cls: Any) -> bool:
    base = _base("pydantic", "BaseModel")
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _is_struct(cls: Any) -> bool:
    base = _base("msgspec", "Struct")
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text[1:] if text.startswith(".") else text


def _invalid(cls: type, errors: list[tuple[str, str]]) -> ClassValidationError:
    """A cattrs error for `cls` whose leaves are `(message, path below cls)`."""
    leaves = []
    for message, path in errors:
        leaf = FieldError(message)
        note = AttributeValidationNote(f"Structuring {cls.__name__}", path, Any)
        leaf.__notes__ = [note]  # type: ignore[attr-defined]  # (3.10: no add_note)
        leaves.append(leaf)
    return ClassValidationError(f"While structuring {cls.__name__}", leaves, cls)


def _pydantic_structure(data: Any, cls: Any) -> Any:
    ValidationError = _base("pydantic", "ValidationError")
    strict = cls.model_config.get("strict", True)  # lax only when the model says so
    try:
        try:
            raw = _dumps(data)
        except Exception:  # noqa: BLE001 - not JSON-ready: validate the Python values
            return cls.model_validate(data, strict=strict)
        return cls.model_validate_json(raw, strict=strict)
    except ValidationError as exc:
        raise _invalid(
            cls, [(e["msg"], _path(tuple(e["loc"])) or "") for e in exc.errors()]
        ) from exc


def _pydantic_unstructure(obj: Any) -> Any:
    return obj.model_dump(mode="json", by_alias=True)


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _struct_structure(data: Any, cls: Any) -> Any:
    msgspec = sys.modules["msgspec"]
    try:
        return msgspec.convert(data, cls, strict=True, str_keys=True)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None  # the pattern matches every string
        path = (match["path"] or "").removeprefix(".")
        raise _invalid(cls, [(match["message"], path)]) from exc


def _struct_unstructure(obj: Any) -> Any:
    return sys.modules["msgspec"].to_builtins(obj, str_keys=True)


def register(conv: cattrs.Converter) -> None:
    """Register the pydantic and msgspec hooks on `conv`."""
    structure: Callable[[Any, Any], Any]
    for predicate, structure, unstructure in (
        (_is_pydantic, _pydantic_structure, _pydantic_unstructure),
        (_is_struct, _struct_structure, _struct_unstructure),
    ):
        conv.register_structure_hook_func(predicate, structure)
        conv.register_unstructure_hook_func(predicate, unstructure)
