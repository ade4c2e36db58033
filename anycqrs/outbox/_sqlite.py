"""SQLite outbox: a writer on the caller's ``sqlite3`` connection and a relay
store on its own connection to the same database file."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from .._persistence import SqliteCaller, SqliteConnection, Table, table_name, utc, utcnow
from ._compression import Compression
from ._model import DEFAULT_TABLE, OutboxItem, OutboxRecord, OutboxSettlement, OutboxStatus
from ._sql import (
    COLUMNS,
    RELEASE,
    RelayStore,
    Transitions,
    fetch_query,
    insert_rows,
    record,
    schema,
    tally,
)
from ._writer import TransactionalWriter

__all__ = ["SqliteOutbox", "SqliteOutboxStore"]

_SET = Transitions.using("?")


def _schema(table: Table) -> tuple[str, ...]:
    return schema(
        table,
        id_column="INTEGER PRIMARY KEY AUTOINCREMENT",
        uuid="TEXT",
        timestamp="REAL",
        sqlite=True,
    )


class SqliteOutbox(TransactionalWriter[sqlite3.Connection]):
    """Writes outbox rows on the caller's ``sqlite3`` connection, inside the
    caller's transaction; it never commits (except in
    `run_in_transaction`, which you ask for explicitly).

    Domain rows and events commit or roll back together. The table is created
    on first use (idempotently) unless ``create_schema=False``.

    Args:
        connection: the application's connection. For `run_in_transaction`
            it must be opened with ``check_same_thread=False``.
        table: table name (lowercase letters, digits, ``_``).
        create_schema: create the table on first use.
        compression: compress payloads, `"zlib"` or `"zstd"` (needs
            `zstandard`); recorded per row, so reading is transparent and rows
            of any setting mix (see the outbox docs).
        tracer_provider: an OpenTelemetry `TracerProvider` for the
            `create` span of each `add` (default: the global one, read now;
            none set: no span). The row's headers carry its trace context.

    Example:
        ```python
        # IMMEDIATE: ``with conn:`` takes the write lock when it begins
        conn = sqlite3.connect("app.db", isolation_level="IMMEDIATE", check_same_thread=False)
        outbox = SqliteOutbox(conn)

        def place_order(order_id: int) -> None:
            with conn:  # commits both rows, or rolls both back
                conn.execute("INSERT INTO orders (id) VALUES (?)", (order_id,))
                outbox.add(NotificationEvent(payload=OrderPlaced(order_id), topic="orders"))

        await anyio.to_thread.run_sync(place_order, 42)
        ```
    """

    __slots__ = ()

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        table: str = DEFAULT_TABLE,
        create_schema: bool = True,
        compression: Compression | None = None,
        tracer_provider: Any = None,
    ) -> None:
        name = table_name(table, "outbox table")
        super().__init__(
            SqliteCaller(connection, name, _schema(name), create=create_schema),
            insert=(
                f"INSERT INTO {name.quoted} (message_id, message_name, topic, key, "
                "headers, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (message_id) DO NOTHING"
            ),
            compression=compression,
            tracer_provider=tracer_provider,
        )

    def _rows(self, items: Iterable[OutboxItem]) -> list[tuple[Any, ...]]:
        now = time.time()
        return insert_rows(items, str, now, now, compress=self._compress)

    def _insert_many(self, rows: list[tuple[Any, ...]]) -> None:
        self._connection.executemany(self._insert, rows)


class SqliteOutboxStore(RelayStore[SqliteConnection]):
    """The relay's side of a SQLite outbox: its own connection to the database
    file the application writes to.

    Claims use ``BEGIN IMMEDIATE`` plus a lease (``claimed_until`` and a claim
    token), so two relays on one file never publish the same row twice. SQLite
    has a single writer, so run **one relay per database file**: more are safe
    but only contend for the write lock. WAL mode (``PRAGMA journal_mode=WAL``,
    set by the application) lets readers proceed during relay writes.

    Methods are blocking (the relay calls them in a worker thread); calls are
    serialized by a lock.

    Args:
        path: the database file.
        table: table name (as given to `SqliteOutbox`).
        timeout: seconds to wait for SQLite's write lock.

    Example:
        ```python
        store = SqliteOutboxStore("app.db")
        relay = OutboxRelay(store, broker)
        dead = await anyio.to_thread.run_sync(lambda: store.fetch(status=OutboxStatus.DEAD))
        ```
    """

    __slots__ = ()

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(table, SqliteConnection(path, timeout=timeout))

    def ensure_schema(self) -> None:
        """Create the table and index if missing (idempotent)."""

        def create(connection: sqlite3.Connection) -> None:
            for statement in _schema(self._table):
                connection.execute(statement)

        self._db.write(create)

    def claim(
        self, *, limit: int, now: datetime, lease: float, token: str
    ) -> Sequence[OutboxRecord]:
        """Claim up to ``limit`` due pending rows (see `OutboxStore`)."""
        at = now.timestamp()

        def claim(connection: sqlite3.Connection) -> list[OutboxRecord]:
            rows = connection.execute(
                f"SELECT {COLUMNS} FROM {self._quoted} WHERE status = 'pending' "
                "AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
                "ORDER BY id LIMIT ?",
                (at, at, limit),
            ).fetchall()
            if rows:
                connection.executemany(
                    f"UPDATE {self._quoted} SET claimed_until = ?, claim_token = ? WHERE id = ?",
                    [(at + lease, token, row[0]) for row in rows],
                )
            return [record(row, utc) for row in rows]

        return self._db.write(claim)

    def settle(self, token: str, settlement: OutboxSettlement, *, now: datetime) -> None:
        """Apply a batch's outcome in one transaction (see `OutboxStore`)."""
        at = now.timestamp()
        table = self._quoted
        held = "WHERE id = ? AND claim_token = ?"

        def settle(connection: sqlite3.Connection) -> None:
            if settlement.sent:
                connection.executemany(
                    f"UPDATE {table} SET {_SET.sent} {held}",
                    [(at, row_id, token) for row_id in settlement.sent],
                )
            if settlement.retry:
                connection.executemany(
                    f"UPDATE {table} SET {_SET.retry} {held}",
                    [
                        (when.timestamp(), error, row_id, token)
                        for row_id, when, error in settlement.retry
                    ],
                )
            if settlement.dead:
                connection.executemany(
                    f"UPDATE {table} SET {_SET.dead} {held}",
                    [(error, row_id, token) for row_id, error in settlement.dead],
                )
            if settlement.release:
                connection.executemany(
                    f"UPDATE {table} SET {RELEASE} {held}",
                    [(row_id, token) for row_id in settlement.release],
                )

        self._db.write(settle)

    def fetch(
        self, *, status: OutboxStatus | None = None, limit: int = 100, after_id: int = 0
    ) -> list[OutboxRecord]:
        """Rows in id order (optionally of one ``status``), for inspection."""
        sql, params = fetch_query(self._quoted, "?", status=status, limit=limit, after_id=after_id)
        rows = self._db.call(lambda connection: connection.execute(sql, params).fetchall())
        return [record(row, utc) for row in rows]

    def counts(self) -> dict[OutboxStatus, int]:
        """How many rows are in each status."""
        sql = f"SELECT status, COUNT(*) FROM {self._quoted} GROUP BY status"
        return tally(self._db.call(lambda connection: connection.execute(sql).fetchall()))

    def retry_dead(self, ids: Iterable[int] | None = None, *, now: datetime | None = None) -> int:
        """Put dead rows (all, or those in ``ids``) back to pending with a fresh
        attempt budget; returns how many. ``last_error`` is kept."""
        at = (now or utcnow()).timestamp()
        sql = f"UPDATE {self._quoted} SET {_SET.revive} WHERE status = 'dead'"

        def revive(connection: sqlite3.Connection) -> int:
            if ids is None:
                return connection.execute(sql, (at,)).rowcount
            return sum(connection.execute(sql + " AND id = ?", (at, i)).rowcount for i in ids)

        return self._db.write(revive)

    def purge_sent(self, before: datetime) -> int:
        """Delete rows sent before ``before``; returns how many."""

        def purge(connection: sqlite3.Connection) -> int:
            return connection.execute(
                f"DELETE FROM {self._quoted} WHERE status = 'sent' AND sent_at < ?",
                (before.timestamp(),),
            ).rowcount

        return self._db.write(purge)
