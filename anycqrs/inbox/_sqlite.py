"""The SQLite inbox: one connection, one transaction at a time."""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any
from uuid import UUID

from .._persistence import table_name
from ..errors import InboxError
from ._store import InboxStore

__all__ = ["SqliteInbox"]

DEFAULT_TABLE = "anycqrs_inbox"


def _schema(quoted: str, index: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {quoted} (handler TEXT NOT NULL, message_id TEXT NOT NULL, "
        "processed_at REAL NOT NULL, PRIMARY KEY (handler, message_id))",
        f"CREATE INDEX IF NOT EXISTS {index} (processed_at)",
    ]


class _SqliteBackend:
    """Blocking half of `SqliteInbox` (see `anycqrs.inbox._store.Backend`)."""

    concurrency = 1

    def __init__(
        self,
        database: str | os.PathLike[str] | sqlite3.Connection,
        table: str,
        timeout: float,
        outbox_table: str | None,
    ) -> None:
        name = table_name(table, "inbox table")
        self._statements = _schema(name.quoted, name.index("_processed_at", sqlite=True))
        self._insert = (
            f"INSERT INTO {name.quoted} (handler, message_id, processed_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING"
        )
        self._seen = f"SELECT 1 FROM {name.quoted} WHERE handler = ? AND message_id = ?"
        self._prune = f"DELETE FROM {name.quoted} WHERE processed_at < ?"
        self._outbox_table = outbox_table
        self._timeout = timeout
        self._lock = threading.Lock()
        self._own = not isinstance(database, sqlite3.Connection)
        self._database = database
        self._connection: sqlite3.Connection | None = (
            None if self._own else database  # type: ignore[assignment]
        )
        self._ready = False
        self._writer: Any = None

    def _open(self) -> sqlite3.Connection:
        connection = self._connection
        if connection is None:
            connection = sqlite3.connect(
                self._database,  # type: ignore[arg-type]
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self._connection = connection
        if not self._ready:
            if connection.in_transaction:
                raise InboxError(
                    "SqliteInbox needs its connection outside a transaction to start one; "
                    "commit or roll back before the first guarded handler runs"
                )
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in self._statements:
                    connection.execute(statement)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
            if self._outbox_table is not None:
                from ..outbox import SqliteOutbox

                self._writer = SqliteOutbox(connection, table=self._outbox_table)
                self._writer.ensure_schema()
            self._ready = True
        return connection

    def ensure_schema(self) -> None:
        with self._lock:
            self._open()

    def begin(self, handler: str, message_id: UUID, now: float) -> Any:
        with self._lock:
            connection = self._open()
            connection.execute("BEGIN IMMEDIATE")
            try:
                cursor = connection.execute(self._insert, (handler, str(message_id), now))
            except BaseException:
                connection.rollback()
                raise
            if cursor.rowcount != 1:
                connection.rollback()
                return None
            return connection

    def savepoint(
        self, handle: Any, release: bool, handler: str, message_id: UUID, now: float
    ) -> tuple[Any, bool]:
        with self._lock:
            fresh = handle is None
            connection = self._open() if fresh else handle
            if fresh:
                connection.execute("BEGIN IMMEDIATE")
            try:
                if release and not fresh:
                    connection.execute("RELEASE SAVEPOINT anycqrs_inbox")
                connection.execute("SAVEPOINT anycqrs_inbox")
                cursor = connection.execute(self._insert, (handler, str(message_id), now))
            except BaseException:
                if fresh:
                    connection.rollback()
                raise
            return connection, cursor.rowcount == 1

    def rollback_savepoint(self, handle: Any) -> None:
        handle.execute("ROLLBACK TO SAVEPOINT anycqrs_inbox")
        handle.execute("RELEASE SAVEPOINT anycqrs_inbox")

    def join(self, handle: Any, handler: str, message_id: UUID, now: float) -> bool:
        cursor = handle.execute(self._insert, (handler, str(message_id), now))
        return bool(cursor.rowcount == 1)

    def connection(self, handle: Any) -> Any:
        return handle

    def outbox(self, handle: Any) -> Any:
        return self._writer

    def commit(self, handle: Any) -> None:
        try:
            handle.commit()
        except BaseException:
            handle.rollback()
            raise

    def rollback(self, handle: Any) -> None:
        handle.rollback()

    def seen(self, handler: str, message_id: UUID) -> bool:
        with self._lock:
            connection = self._open()
            row = connection.execute(self._seen, (handler, str(message_id))).fetchone()
            return row is not None

    def prune(self, before: float) -> int:
        with self._lock:
            connection = self._open()
            connection.execute("BEGIN IMMEDIATE")
            try:
                removed = connection.execute(self._prune, (before,)).rowcount
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
            return int(removed)

    def close(self) -> None:
        with self._lock:
            if self._own and self._connection is not None:
                self._connection.close()
                self._connection = None
                self._ready = False


class SqliteInbox(InboxStore):
    """An inbox in a SQLite database: the processed ``(handler,
    message_id)`` pairs, written in the transaction the guarded handler works in.

    The store uses one connection and opens one transaction at a time
    (SQLite has one writer anyway): ``BEGIN IMMEDIATE`` takes the write
    lock before the inbox row is inserted, so two processes handling the
    same message serialize and the second sees the row. Keep the domain
    tables in the same database file to write them in that transaction.

    Args:
        database: a file path (``":memory:"`` works for tests) or an open
            ``sqlite3.Connection`` the store uses for its transactions (use it
            for nothing else meanwhile).
        table: the inbox table (created on first use with its
            ``processed_at`` index).
        timeout: seconds to wait for another connection's write lock.
        outbox_table: an outbox table: `InboxTransaction.outbox` then stages
            rows there in the same transaction (an `anycqrs.outbox.SqliteOutbox`).
        defer_begin: begin the transaction and write the inbox row in the
            hop of the handler's first `InboxTransaction.run` instead of in
            a hop of their own before the handler (with a last
            ``run(fn, commit=True)`` a message then takes one thread hop). A
            duplicate is found at that first `run`, which stops the handler
            there: what the handler does before its first `run` is repeated
            on a redelivery, so keep it free of effects (default `False`).
        batch: a consumer handles each lane chunk in one transaction: a
            ``SAVEPOINT`` per guarded handler call, one commit per chunk, the
            chunk's messages settled after it (default `False`; see the
            "Speed" docs section).

    Example:
        ```python
        inbox = SqliteInbox("app.sqlite3", outbox_table="anycqrs_outbox")
        mediator = anycqrs.events.bootstrap.bootstrap(events_mapper=bind, inbox=inbox)
        ```
    """

    __slots__ = ()

    def __init__(
        self,
        database: str | os.PathLike[str] | sqlite3.Connection,
        *,
        table: str = DEFAULT_TABLE,
        timeout: float = 5.0,
        outbox_table: str | None = None,
        defer_begin: bool = False,
        batch: bool = False,
    ) -> None:
        super().__init__(
            _SqliteBackend(database, table, timeout, outbox_table),
            defer_begin=defer_begin,
            batch=batch,
        )
