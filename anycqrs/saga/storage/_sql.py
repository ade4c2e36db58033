"""Helpers shared by the SQL saga storages."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

__all__ = ["dumps", "identifier", "loads", "utc"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")

try:  # pragma: no cover - depends on the environment
    import orjson

    def dumps(data: Any) -> str:
        """JSON text of ``data``."""
        return orjson.dumps(data).decode()

    loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover

    def dumps(data: Any) -> str:
        """JSON text of ``data``."""
        return json.dumps(data, separators=(",", ":"))

    loads = json.loads


def identifier(name: str, what: str) -> str:
    """Check a table name given by argument (``name`` or ``schema.name``)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what} must be a plain SQL identifier (letters, digits, underscores, "
            f"optionally schema-qualified), got {name!r}"
        )
    return name


def utc(at: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(at, timezone.utc)
