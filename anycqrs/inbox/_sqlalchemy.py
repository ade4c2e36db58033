"""The SQLAlchemy inbox (PostgreSQL, MariaDB/MySQL, SQLite): a connection
of the engine per open transaction."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .._persistence import table_name
from .._persistence._sqlalchemy import UtcDateTime, create_tables, sa_table
from ._store import InboxStore

__all__ = ["SqlAlchemyInbox"]

DEFAULT_TABLE = "anycqrs_inbox"


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, timezone.utc)


class _SqlAlchemyBackend:
    """Blocking half of `SqlAlchemyInbox` (see `anycqrs.inbox._store.Backend`).

    A duplicate is the primary key refusing the row (``IntegrityError``),
    portable across databases; on SQLite one transaction is open at a time.
    """

    def __init__(
        self, engine: Engine, table: str, concurrency: int, outbox_table: str | None
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"max_transactions must be at least 1, got {concurrency}")
        name = table_name(table, "inbox table")
        self._engine = engine
        self.concurrency = 1 if engine.dialect.name == "sqlite" else concurrency
        self._metadata = sa.MetaData()
        self._table = sa_table(
            name,
            self._metadata,
            sa.Column("handler", sa.String(255), primary_key=True),
            sa.Column("message_id", sa.Uuid(), primary_key=True),
            sa.Column("processed_at", UtcDateTime(), nullable=False),
        )
        sa.Index(f"{name.name}_processed_at", self._table.c.processed_at)
        self._key = f"anycqrs-inbox:{name}"
        self._outbox_table = outbox_table
        self._lock = threading.Lock()
        self._ready = False
        self._outbox_ready = False

    def ensure_schema(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                with self._engine.begin() as connection:
                    create_tables(connection, self._metadata, self._key)
                if self._outbox_table is not None:
                    from ..outbox import SqlAlchemyOutbox

                    with self._engine.connect() as connection:
                        SqlAlchemyOutbox(connection, table=self._outbox_table).ensure_schema()
                        if connection.in_transaction():
                            connection.commit()
                self._ready = True

    def begin(self, handler: str, message_id: UUID, now: float) -> Any:
        self.ensure_schema()
        connection = self._engine.connect()
        try:
            connection.begin()
            try:
                connection.execute(
                    self._table.insert().values(
                        handler=handler, message_id=message_id, processed_at=_at(now)
                    )
                )
            except sa.exc.IntegrityError:
                connection.rollback()
                connection.close()
                return None
        except BaseException:
            connection.close()  # rolls back
            raise
        return connection

    def join(self, handle: Any, handler: str, message_id: UUID, now: float) -> bool:
        connection: Connection = handle
        try:
            with connection.begin_nested():
                connection.execute(
                    self._table.insert().values(
                        handler=handler, message_id=message_id, processed_at=_at(now)
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def connection(self, handle: Any) -> Any:
        return handle

    def outbox(self, handle: Any) -> Any:
        if self._outbox_table is None:
            return None
        from ..outbox import SqlAlchemyOutbox

        return SqlAlchemyOutbox(handle, table=self._outbox_table, create_schema=False)

    def commit(self, handle: Any) -> None:
        try:
            handle.commit()
        finally:
            handle.close()

    def rollback(self, handle: Any) -> None:
        try:
            handle.rollback()
        finally:
            handle.close()

    def seen(self, handler: str, message_id: UUID) -> bool:
        self.ensure_schema()
        table = self._table
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(sa.literal(1)).where(
                    table.c.handler == handler, table.c.message_id == message_id
                )
            ).first()
            return row is not None

    def prune(self, before: float) -> int:
        self.ensure_schema()
        with self._engine.begin() as connection:
            result = connection.execute(
                self._table.delete().where(self._table.c.processed_at < _at(before))
            )
            return int(result.rowcount)

    def close(self) -> None:
        """The engine is the application's: nothing to close."""


class SqlAlchemyInbox(InboxStore):
    """An inbox through a SQLAlchemy 2 ``Engine`` (PostgreSQL, MariaDB/MySQL,
    SQLite): the processed ``(handler, message_id)`` pairs, written in the
    transaction the guarded handler works in (`InboxTransaction.connection`
    is a Core ``Connection``; bind an ORM ``Session`` to it if you like).

    The inbox row goes in first; a duplicate is the primary key refusing it.
    A second delivery of a message being handled waits on the first's
    uncommitted row (PostgreSQL, MariaDB row locks; SQLite's write lock, one
    transaction at a time per store).

    Args:
        engine: a sync SQLAlchemy ``Engine`` (its pool should hold at least
            ``max_transactions`` connections).
        table: the inbox table (created on first use with its index).
        max_transactions: inbox transactions open at once (1 on SQLite).
        outbox_table: an outbox table: `InboxTransaction.outbox` then stages
            rows there in the same transaction (an `anycqrs.outbox.SqlAlchemyOutbox`).
        defer_begin: begin the transaction and write the inbox row in the
            hop of the handler's first `InboxTransaction.run` instead of in
            a hop of their own before the handler (with a last
            ``run(fn, commit=True)`` a message then takes one thread hop). A
            duplicate is found at that first `run`, which stops the handler
            there: what the handler does before its first `run` is repeated
            on a redelivery, so keep it free of effects (default `False`).

    Example:
        ```python
        engine = sqlalchemy.create_engine("mysql+pymysql://app@db/app")
        inbox = SqlAlchemyInbox(engine, outbox_table="anycqrs_outbox")
        ```
    """

    __slots__ = ()

    def __init__(
        self,
        engine: Engine,
        *,
        table: str = DEFAULT_TABLE,
        max_transactions: int = 16,
        outbox_table: str | None = None,
        defer_begin: bool = False,
    ) -> None:
        super().__init__(
            _SqlAlchemyBackend(engine, table, max_transactions, outbox_table),
            defer_begin=defer_begin,
        )
