"""What the SQLite and PostgreSQL outboxes share: the table's columns, the row
transitions of a claim's settlement, and turning messages into rows and rows
into records. Each backend keeps its own connections, locking and column types."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

import attrs

from .._persistence import Table, table_name
from ._model import OutboxItem, OutboxRecord, OutboxStatus, encode

__all__ = [
    "COLUMNS",
    "RELEASE",
    "RelayStore",
    "Transitions",
    "fetch_query",
    "insert_rows",
    "record",
    "schema",
    "tally",
]

T = TypeVar("T")
S = TypeVar("S", bound="RelayStore[Any]")


class _Closeable(Protocol):
    def close(self) -> None: ...


D = TypeVar("D", bound=_Closeable)

COLUMNS = (
    "id, message_id, message_name, topic, key, headers, payload, status, attempts, "
    "created_at, next_attempt_at, last_error, sent_at"
)
"""The columns of an `OutboxRecord`, in the order `record` reads them."""

RELEASE = "claimed_until = NULL, claim_token = NULL"
"""Drops a row's claim."""


def schema(
    table: Table,
    *,
    id_column: str,
    uuid: str,
    timestamp: str,
    default_now: str = "",
    sqlite: bool = False,
) -> tuple[str, ...]:
    """The table and its pending-rows index, with the backend's column types."""
    quoted = table.quoted
    return (
        f"""CREATE TABLE IF NOT EXISTS {quoted} (
            id {id_column},
            message_id {uuid} NOT NULL UNIQUE,
            message_name TEXT NOT NULL,
            topic TEXT NOT NULL,
            key TEXT,
            headers TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at {timestamp} NOT NULL{default_now},
            next_attempt_at {timestamp} NOT NULL{default_now},
            claimed_until {timestamp},
            claim_token TEXT,
            sent_at {timestamp},
            last_error TEXT
        )""",
        f"CREATE INDEX IF NOT EXISTS {table.index('_pending', sqlite=sqlite)} (id) "
        "WHERE status = 'pending'",
    )


@attrs.frozen
class Transitions:
    """``SET`` clauses of the row changes, written with the backend's placeholder.

    Every attempt counts (sent, retry, dead) and drops the claim; reviving a
    dead row gives it a fresh attempt budget.
    """

    sent: str
    retry: str
    dead: str
    revive: str

    @classmethod
    def using(cls, p: str) -> Transitions:
        """The clauses with placeholder ``p`` (``?`` or ``%s``)."""
        return cls(
            sent=f"status = 'sent', attempts = attempts + 1, sent_at = {p}, {RELEASE}",
            retry=f"attempts = attempts + 1, next_attempt_at = {p}, last_error = {p}, {RELEASE}",
            dead=f"status = 'dead', attempts = attempts + 1, last_error = {p}, {RELEASE}",
            revive=f"status = 'pending', attempts = 0, next_attempt_at = {p}, {RELEASE}",
        )


def insert_rows(
    items: Iterable[OutboxItem],
    message_id: Callable[[UUID], Any],
    *extra: Any,
    compress: Callable[[str], str] | None = None,
) -> list[tuple[Any, ...]]:
    """Encode ``items`` as ``(message_id, message_name, topic, key, headers,
    payload, *extra)`` rows, the id converted by ``message_id``, the payload
    compressed by ``compress``."""
    rows = []
    for item in items:
        encoded = encode(item, compress)
        rows.append(
            (
                message_id(encoded.message_id),
                encoded.message_name,
                encoded.topic,
                encoded.key,
                encoded.headers,
                encoded.payload,
                *extra,
            )
        )
    return rows


def record(row: Sequence[Any], moment: Callable[[Any], datetime]) -> OutboxRecord:
    """An `OutboxRecord` from a row of `COLUMNS`, the stored times
    converted by ``moment``."""
    sent_at = row[12]
    return OutboxRecord(
        id=row[0],
        message_id=str(row[1]),
        message_name=row[2],
        topic=row[3],
        key=row[4],
        headers=row[5],
        payload=row[6],
        status=OutboxStatus(row[7]),
        attempts=row[8],
        created_at=moment(row[9]),
        next_attempt_at=moment(row[10]),
        last_error=row[11],
        sent_at=None if sent_at is None else moment(sent_at),
    )


def fetch_query(
    quoted: str, p: str, *, status: OutboxStatus | None, limit: int, after_id: int
) -> tuple[str, tuple[Any, ...]]:
    """The inspection query of ``fetch`` and its parameters."""
    where = f"id > {p}" + ("" if status is None else f" AND status = {p}")
    params: tuple[Any, ...] = (after_id,) if status is None else (after_id, status.value)
    sql = f"SELECT {COLUMNS} FROM {quoted} WHERE {where} ORDER BY id LIMIT {p}"
    return sql, (*params, limit)


def tally(rows: Iterable[Sequence[Any]]) -> dict[OutboxStatus, int]:
    """Per-status counts from ``(status, count)`` rows, zero for the missing ones."""
    counts = dict.fromkeys(OutboxStatus, 0)
    counts.update({OutboxStatus(status): count for status, count in rows})
    return counts


class RelayStore(Generic[D]):
    """What both relay stores share: the validated table, the store's own
    connection holder ``D``, ``close`` and ``with`` support (internal)."""

    __slots__ = ("_db", "_quoted", "_table")

    def __init__(self, table: str, db: D) -> None:
        self._table = table_name(table, "outbox table")
        self._quoted = self._table.quoted
        self._db = db

    @property
    def table(self) -> str:
        """The outbox table's name."""
        return str(self._table)

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store's connection (it reopens on next use)."""
        self._db.close()
