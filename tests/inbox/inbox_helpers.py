"""One harness per inbox store: the store, an effects table written in the
inbox transaction, and read-backs (every database real, tables unique)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs

import anycqrs
from anycqrs.inbox import InboxStore, PostgresInbox, SqliteInbox


@attrs.frozen
class Paid:
    order_id: int


@attrs.frozen
class Shipped:
    order_id: int


def paid(order_id: int, **kwargs: Any) -> anycqrs.NotificationEvent[Paid]:
    kwargs.setdefault("topic", "orders")
    return anycqrs.NotificationEvent(payload=Paid(order_id), **kwargs)


class Harness:
    kind: str
    table: str
    outbox: str
    effects_table: str
    batch = False
    """Stores made in batch mode (``batch=True``: a transaction per chunk)."""
    optimistic = False
    """Batch stores made optimistic (``optimistic=True``: no savepoints; PostgreSQL)."""

    def store(self, **kwargs: Any) -> InboxStore:
        raise NotImplementedError

    def write(self, connection: Any, key: str, value: int) -> None:
        """Insert one effect row on the inbox transaction's connection."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def effects(self) -> list[tuple[str, int]]:
        rows = self.execute(f"SELECT k, v FROM {self.effects_table} ORDER BY id")
        return [(str(k), int(v)) for k, v in rows]

    def outbox_ids(self) -> list[str]:
        rows = self.execute(f"SELECT message_id FROM {self.outbox} ORDER BY id")
        return [str(UUID(str(r[0]))) for r in rows]

    def inbox_rows(self) -> int:
        return int(self.execute(f"SELECT COUNT(*) FROM {self.table}")[0][0])

    def blocked(self, inbox: InboxStore) -> bool:
        """Whether a second transaction waits for the first (on the store's
        bound on SQLite, on the first's row lock elsewhere)."""
        return bool(inbox._slots._waiters)

    def close(self) -> None:
        pass


class SqliteHarness(Harness):
    kind = "sqlite"

    def __init__(self, path: Path, unique: str) -> None:
        self.path = path
        self.table = f"inbox_{unique}"
        self.outbox = f"outbox_{unique}"
        self.effects_table = f"effects_{unique}"
        self.execute(
            f"CREATE TABLE {self.effects_table} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "k TEXT NOT NULL, v INTEGER NOT NULL)"
        )

    def store(self, **kwargs: Any) -> InboxStore:
        if self.batch:
            kwargs.setdefault("batch", True)
        return SqliteInbox(self.path, table=self.table, outbox_table=self.outbox, **kwargs)

    def write(self, connection: Any, key: str, value: int) -> None:
        connection.execute(f"INSERT INTO {self.effects_table} (k, v) VALUES (?, ?)", (key, value))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path)) as connection, connection:
            return connection.execute(sql, tuple(params)).fetchall()


class PostgresHarness(Harness):
    kind = "postgres"

    def __init__(self, dsn: str, unique: str, *, pooled: bool = False) -> None:
        self.dsn = dsn
        self.pool: Any = None
        if pooled:
            from psycopg_pool import ConnectionPool

            self.pool = ConnectionPool(dsn, min_size=1, max_size=8, open=True)
        self.table = f"inbox_{unique}"
        self.outbox = f"outbox_{unique}"
        self.effects_table = f"effects_{unique}"
        self.execute(
            f"CREATE TABLE {self.effects_table} (id BIGSERIAL PRIMARY KEY, k TEXT NOT NULL, "
            "v INTEGER NOT NULL)"
        )

    def store(self, **kwargs: Any) -> InboxStore:
        if self.batch:
            kwargs.setdefault("batch", True)
        if self.optimistic:
            kwargs.setdefault("optimistic", True)
        if self.pool is not None:
            return PostgresInbox(
                pool=self.pool, table=self.table, outbox_table=self.outbox, **kwargs
            )
        return PostgresInbox(self.dsn, table=self.table, outbox_table=self.outbox, **kwargs)

    def write(self, connection: Any, key: str, value: int) -> None:
        connection.execute(
            f"INSERT INTO {self.effects_table} (k, v) VALUES (%s, %s)".encode(), (key, value)
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as connection:
            cursor = connection.execute(sql.encode(), tuple(params))
            return cursor.fetchall() if cursor.description else []

    def blocked(self, inbox: InboxStore) -> bool:
        rows = self.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND query LIKE %s",
            (f"%{self.table}%",),
        )
        return int(rows[0][0]) > 0

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for table in (self.table, self.outbox, self.effects_table):
            self.execute(f'DROP TABLE IF EXISTS "{table}"')


class SqlAlchemyHarness(Harness):
    def __init__(self, kind: str, url: str, unique: str) -> None:
        import sqlalchemy

        self.kind = kind
        self.engine = sqlalchemy.create_engine(url, pool_size=20)
        self.table = f"inbox_{unique}"
        self.outbox = f"outbox_{unique}"
        self.effects_table = f"effects_{unique}"
        serial = {
            "sqlalchemy-sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
            "sqlalchemy-postgres": "BIGSERIAL PRIMARY KEY",
            "sqlalchemy-mariadb": "BIGINT AUTO_INCREMENT PRIMARY KEY",
        }[kind]
        self.execute(
            f"CREATE TABLE {self.effects_table} (id {serial}, k VARCHAR(64) NOT NULL, "
            "v INTEGER NOT NULL)"
        )

    def store(self, **kwargs: Any) -> InboxStore:
        from anycqrs.inbox import SqlAlchemyInbox

        return SqlAlchemyInbox(self.engine, table=self.table, outbox_table=self.outbox, **kwargs)

    def write(self, connection: Any, key: str, value: int) -> None:
        from sqlalchemy import text

        connection.execute(
            text(f"INSERT INTO {self.effects_table} (k, v) VALUES (:k, :v)"), {"k": key, "v": value}
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.engine.begin() as connection:
            result = connection.exec_driver_sql(sql, tuple(params))
            return [tuple(row) for row in result] if result.returns_rows else []

    def blocked(self, inbox: InboxStore) -> bool:
        if self.kind == "sqlalchemy-sqlite":
            return super().blocked(inbox)
        if self.kind == "sqlalchemy-postgres":
            sql = "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        else:
            # the first's INSERT finished before its handler waits: a running
            # INSERT into the inbox is the second's, waiting on the row lock
            sql = "SELECT info FROM information_schema.processlist WHERE info LIKE 'INSERT%%'"
        return any(self.table in str(row[0]) for row in self.execute(sql))

    def close(self) -> None:
        for table in (self.table, self.outbox, self.effects_table):
            self.execute(f"DROP TABLE IF EXISTS {table}")
        self.engine.dispose()
