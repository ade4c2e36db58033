"""SQLAlchemy 2 (a sync ``Engine``, blocking): portable column types, schema
creation, and the caller's ``Session`` or ``Connection``.

Imported only by the SQLAlchemy stores (so ``anycqrs._persistence`` never
needs SQLAlchemy). The conventions are the package's: JSON is text written by
`dumps`, times are aware UTC (stored naive UTC where the database has no zone,
with microseconds), table names follow `table_name`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar, Union

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

from ._caller import Caller
from ._common import Table

__all__ = [
    "Bind",
    "JsonText",
    "SqlAlchemyCaller",
    "UtcDateTime",
    "connection_of",
    "create_tables",
    "lease_rows",
    "sa_table",
    "transactional_ddl",
]

T = TypeVar("T")

Bind = Union[Session, Connection]
"""The caller's unit of work: an ORM ``Session`` or a Core ``Connection``."""

JsonText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
"""JSON text of `dumps` (``LONGTEXT`` on MySQL/MariaDB, whose ``TEXT`` holds 64 KiB)."""


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime: ``timestamptz`` on PostgreSQL, naive UTC with
    microseconds elsewhere (``DATETIME(6)`` on MySQL/MariaDB)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or dialect.name == "postgresql":
            return value
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def sa_table(table: Table, metadata: sa.MetaData, *columns: Any) -> sa.Table:
    """A Core table named by a validated `Table` (schema-qualified if given)."""
    return sa.Table(table.name, metadata, *columns, schema=table.schema)


def transactional_ddl(dialect: Dialect) -> bool:
    """Whether DDL joins the open transaction (MySQL/MariaDB commit it instead)."""
    return dialect.name not in ("mysql", "mariadb")


def create_tables(connection: Connection, metadata: sa.MetaData, key: str) -> None:
    """Create ``metadata``'s missing tables and indexes on ``connection``, in
    its transaction; on PostgreSQL serialized across processes by an advisory
    lock on ``key`` (as `create_schema` does)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
    metadata.create_all(connection, checkfirst=True)


def lease_rows(
    connection: Connection,
    table: sa.Table,
    candidates: sa.Select[Any],
    values: Mapping[str, Any],
    columns: Sequence[sa.ColumnElement[Any]],
) -> Sequence[sa.Row[Any]]:
    """Lock the rows ``candidates`` selects (their primary key, first column;
    ``FOR UPDATE SKIP LOCKED`` where the database has row locks), set
    ``values`` on them and return their ``columns`` as updated: one
    ``UPDATE ... RETURNING`` where the database has it (PostgreSQL, SQLite),
    else (MySQL/MariaDB) lock, update by key and read back, all in the
    connection's transaction. The recovery claims and the outbox relay's."""
    key = table.primary_key.columns.values()[0]
    locked = candidates.with_for_update(skip_locked=True)
    if connection.dialect.update_returning:
        return connection.execute(
            table.update()
            .where(key.in_(locked.scalar_subquery()))
            .values(**values)
            .returning(*columns)
        ).all()
    keys = list(connection.execute(locked).scalars())
    if not keys:
        return []
    connection.execute(table.update().where(key.in_(keys)).values(**values))
    return connection.execute(sa.select(*columns).where(key.in_(keys))).all()


def connection_of(bind: Bind) -> Connection:
    """The ``Connection`` a bind executes on (a session's, in its transaction)."""
    return bind.connection() if isinstance(bind, Session) else bind


class SqlAlchemyCaller(Caller[Bind]):
    """The caller's ``Session`` or ``Connection`` (see `Caller`).

    Where DDL is transactional (PostgreSQL, SQLite), a creation made inside
    the caller's transaction is confirmed when `transaction` commits, or by
    the first check outside a transaction; until then each check asks the
    database whether the table exists. MySQL/MariaDB commit the open
    transaction on DDL, so there the schema is created on a connection of
    its own from the same engine (committed at once).
    """

    __slots__ = ("_created", "key", "metadata")

    def __init__(
        self, bind: Bind, table: Table, metadata: sa.MetaData, *, key: str, create: bool = True
    ) -> None:
        super().__init__(bind, table, (), create=create)
        self.metadata = metadata
        self.key = key
        self._created = False

    def _exists(self, connection: Connection) -> bool:
        return sa.inspect(connection).has_table(self.table.name, schema=self.table.schema)

    def _check(self) -> bool:
        bind = self.connection
        if not bind.in_transaction():  # what we see is committed
            with bind.begin():
                create_tables(connection_of(bind), self.metadata, self.key)
            self._created = False
            return True
        connection = connection_of(bind)
        if self._exists(connection):
            # Created by someone else: committed. By us in this still-open
            # transaction (or one whose end we haven't seen): not yet known.
            return not self._created
        if not transactional_ddl(connection.dialect):
            with connection.engine.begin() as own:
                create_tables(own, self.metadata, self.key)
            return True
        create_tables(connection, self.metadata, self.key)
        self._created = True
        return False

    def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in ``bind.begin()`` (a ``begin_nested()``
        savepoint when a transaction is already open), blocking: committed
        when ``fn`` returns, rolled back if it raises. Calls are serialized.
        A commit of its own confirms a schema created inside it."""
        bind = self.connection
        with self.lock:
            outermost = not bind.in_transaction()
            with bind.begin() if outermost else bind.begin_nested():
                result = fn(*args)
            if outermost and self._created:
                self._created, self._ready = False, True
            return result
