"""Outbox test helpers: database harnesses (a real SQLite file, the real
PostgreSQL), a settable clock and a recording broker."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import attrs

from anycqrs import NotificationEvent
from anycqrs.brokers import Message
from anycqrs.outbox import (
    OutboxItem,
    PostgresOutbox,
    PostgresOutboxStore,
    SqliteOutbox,
    SqliteOutboxStore,
)


@attrs.frozen
class OrderPlaced:
    order_id: int


def event(order_id: int, **kwargs: Any) -> NotificationEvent[OrderPlaced]:
    return NotificationEvent(payload=OrderPlaced(order_id=order_id), topic="orders", **kwargs)


class Harness:
    """A database with an ``orders`` domain table and an outbox table."""

    kind: str
    table: str
    orders: str

    def connect(self) -> Any:
        raise NotImplementedError

    def writer(self, connection: Any, **kwargs: Any) -> SqliteOutbox | PostgresOutbox:
        raise NotImplementedError

    def store(self) -> SqliteOutboxStore | PostgresOutboxStore:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def ph(self) -> str:
        return "?" if self.kind == "sqlite" else "%s"

    def insert_order(self, connection: Any, order_id: int) -> None:
        """A domain row, written on the application's ``connection``."""
        connection.execute(f"INSERT INTO {self.orders} (id) VALUES ({self.ph()})", (order_id,))

    def transaction(self, connection: Any) -> Any:
        """The application's own transaction block on ``connection``."""
        return connection.transaction()

    def add(self, *items: OutboxItem) -> None:
        """Commit ``items`` in one transaction of a fresh application connection."""
        connection = self.connect()
        try:
            self.writer(connection).transaction(self.writer(connection).add_many, items)
        finally:
            connection.close()

    def order_ids(self) -> list[int]:
        return [row[0] for row in self.execute(f"SELECT id FROM {self.orders} ORDER BY id")]

    def corrupt(self, row_id: int, **columns: Any) -> None:
        sets = ", ".join(f"{name} = {self.ph()}" for name in columns)
        self.execute(
            f'UPDATE "{self.table}" SET {sets} WHERE id = {self.ph()}', (*columns.values(), row_id)
        )


class SqliteHarness(Harness):
    kind = "sqlite"

    def __init__(self, path: Path, unique: str) -> None:
        self.path = path
        self.table = f"outbox_{unique}"
        self.orders = f"orders_{unique}"
        self.execute(f"CREATE TABLE {self.orders} (id INTEGER PRIMARY KEY)")

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False)

    def transaction(self, connection: Any) -> Any:
        return connection

    def writer(self, connection: Any, **kwargs: Any) -> SqliteOutbox:
        return SqliteOutbox(connection, table=self.table, **kwargs)

    def store(self) -> SqliteOutboxStore:
        return SqliteOutboxStore(self.path, table=self.table)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # ``with connection`` only commits; closing() closes it too
        with contextlib.closing(sqlite3.connect(self.path)) as connection, connection:
            return connection.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        pass


class PostgresHarness(Harness):
    """The psycopg outbox; with ``pooled=True`` its relay stores borrow their
    connections from a ``psycopg_pool.ConnectionPool``."""

    kind = "postgres"

    def __init__(self, dsn: str, unique: str, *, pooled: bool = False) -> None:
        self.dsn = dsn
        self.pool: Any = None
        if pooled:
            from psycopg_pool import ConnectionPool

            self.pool = ConnectionPool(dsn, min_size=1, max_size=4, open=True)
        self.table = f"outbox_{unique}"
        self.orders = f"orders_{unique}"
        self.execute(f"CREATE TABLE {self.orders} (id INTEGER PRIMARY KEY)")

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn)

    def writer(self, connection: Any, **kwargs: Any) -> PostgresOutbox:
        return PostgresOutbox(connection, table=self.table, **kwargs)

    def store(self) -> PostgresOutboxStore:
        if self.pool is not None:
            return PostgresOutboxStore(pool=self.pool, table=self.table)
        return PostgresOutboxStore(self.dsn, table=self.table)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as connection:
            cursor = connection.execute(sql.encode(), tuple(params))
            return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        self.execute(f'DROP TABLE IF EXISTS "{self.table}"')
        self.execute(f"DROP TABLE IF EXISTS {self.orders}")


class SqlAlchemyHarness(Harness):
    """The SQLAlchemy outbox on one database; the application binds the
    writer to a ``Connection`` or (``session=True``) an ORM ``Session``."""

    def __init__(self, kind: str, url: str, unique: str, *, session: bool) -> None:
        import sqlalchemy

        self.kind = kind
        self.engine = sqlalchemy.create_engine(url)
        self.session = session
        self.table = f"outbox_{unique}"
        self.orders = f"orders_{unique}"
        self.execute(f"CREATE TABLE {self.orders} (id INTEGER PRIMARY KEY)")

    def ph(self) -> str:
        return "?" if self.kind == "sqlalchemy-sqlite" else "%s"

    def connect(self) -> Any:
        from sqlalchemy.orm import Session

        return Session(self.engine) if self.session else self.engine.connect()

    def writer(self, connection: Any, **kwargs: Any) -> Any:
        from anycqrs.outbox import SqlAlchemyOutbox

        return SqlAlchemyOutbox(connection, table=self.table, **kwargs)

    def store(self) -> Any:
        from anycqrs.outbox import SqlAlchemyOutboxStore

        return SqlAlchemyOutboxStore(self.engine, table=self.table)

    def insert_order(self, connection: Any, order_id: int) -> None:
        from sqlalchemy import text

        connection.execute(text(f"INSERT INTO {self.orders} (id) VALUES (:id)"), {"id": order_id})

    def transaction(self, connection: Any) -> Any:
        return connection.begin()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.engine.begin() as connection:
            result = connection.exec_driver_sql(
                sql.replace('"', "`") if self.kind == "sqlalchemy-mariadb" else sql, tuple(params)
            )
            return [tuple(row) for row in result] if result.returns_rows else []

    def close(self) -> None:
        self.execute(f'DROP TABLE IF EXISTS "{self.table}"')
        self.execute(f"DROP TABLE IF EXISTS {self.orders}")
        self.engine.dispose()


class Clock:
    """A settable clock for relays (aware UTC)."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RecordingBroker:
    """Records what it sends; optional failures; signals when ``target`` messages arrived.

    A test double of the broker protocol (the relay only needs ``send_message``)."""

    def __init__(
        self,
        *,
        fail: Callable[[Message], bool] = lambda message: False,
        target: int | None = None,
    ) -> None:
        self.messages: list[Message] = []
        self.calls = 0
        self.batches = 0
        self._fail = fail
        self.target = target
        self.reached = anyio.Event()

    def _record(self, message: Message) -> None:
        self.messages.append(message)
        if self.target is not None and len(self.messages) >= self.target:
            self.reached.set()

    async def send_message(self, message: Message, /) -> None:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self._fail(message):
            raise ConnectionError(f"broker refused {message.message_name}")
        self._record(message)


class BatchRecordingBroker(RecordingBroker):
    """A `RecordingBroker` that also publishes batches (a `BatchMessageBroker`)."""

    async def send_many(self, messages: Sequence[Message], /) -> None:
        self.batches += 1
        await anyio.lowlevel.checkpoint()
        if any(self._fail(m) for m in messages):
            raise ConnectionError("batch refused")
        for message in messages:
            self._record(message)


def order_ids(messages: Sequence[Message]) -> list[int]:
    return [m.payload["payload"]["order_id"] for m in messages]
