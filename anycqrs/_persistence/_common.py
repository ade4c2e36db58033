"""JSON text, table names, time and the one thread hop (see the package docstring)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, TypeVar

import anyio.to_thread
import attrs

from .. import serialization
from ..errors import SerializationError

__all__ = ["Table", "as_is", "dumps", "in_thread", "loads", "table_name", "utc", "utcnow"]

T = TypeVar("T")

_PART = r"[a-z_][a-z0-9_]{0,47}"
_NAME = re.compile(rf"(?:({_PART})\.)?({_PART})")
RULE = (
    "lowercase letters, digits and '_', not starting with a digit, at most 48 characters, "
    "optionally prefixed by a schema name and '.' following the same rule"
)
"""The one rule for table names, as error messages state it."""


@attrs.frozen
class Table:
    """A validated table name (see `table_name`)."""

    name: str
    """The table's own name."""
    schema: str | None = None
    """Its schema (PostgreSQL) or attached database (SQLite), if given."""

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"

    @property
    def quoted(self) -> str:
        """The name as spliced into SQL: double-quoted, schema-qualified if given."""
        return f'"{self.name}"' if self.schema is None else f'"{self.schema}"."{self.name}"'

    def index(self, suffix: str, *, sqlite: bool = False) -> str:
        """``<index> ON <table>`` for ``CREATE INDEX``: the index is named
        after the table plus ``suffix``. SQLite qualifies the index, not the
        table; PostgreSQL puts the index in the table's schema."""
        flat = self.name if self.schema is None else f"{self.schema}_{self.name}"
        if sqlite and self.schema is not None:
            return f'"{self.schema}"."{flat}{suffix}" ON "{self.name}"'
        return f'"{flat}{suffix}" ON {self.quoted}'


def table_name(value: Any, what: str) -> Table:
    """Validate a table name; ``what`` names it in the error (``"outbox table"``,
    ``"sagas_table"``).

    Raises:
        ValueError: ``value`` breaks the rule; the message names it and the rule.
    """
    match = _NAME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"Invalid {what} name {value!r}: use {RULE}")
    return Table(name=match[2], schema=match[1])


def dumps(data: Any) -> str:
    """JSON text of plain data, with `anycqrs.serialization.dumps`.

    Raises:
        SerializationError: ``data`` holds something JSON can't represent.
    """
    try:
        return serialization.dumps(data).decode()
    except Exception as exc:
        raise SerializationError(f"Cannot encode {type(data).__qualname__} as JSON: {exc}") from exc


loads = serialization.loads
"""Parse stored JSON text (`anycqrs.serialization.loads`)."""


def utc(at: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(at, timezone.utc)


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(timezone.utc)


def as_is(value: T) -> T:
    """A value the driver already returns (or accepts) as wanted."""
    return value


in_thread = anyio.to_thread.run_sync
"""``await in_thread(fn, *args, limiter=None)``: blocking database work in a
worker thread, the one thread hop of a unit of work (anyio's own function, so
the hop costs no extra frame)."""
