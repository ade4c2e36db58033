"""SQLAlchemy 2 outbox: a writer on the caller's ``Session`` or ``Connection``
and a relay store on its own connections from a sync ``Engine``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .._persistence import Table, as_is, table_name, utcnow
from .._persistence._sqlalchemy import (
    Bind,
    JsonText,
    SqlAlchemyCaller,
    UtcDateTime,
    connection_of,
    create_tables,
    lease_rows,
    sa_table,
)
from ._compression import Compression
from ._model import DEFAULT_TABLE, OutboxItem, OutboxRecord, OutboxSettlement, OutboxStatus
from ._sql import COLUMNS, RelayStore, insert_rows, record, tally
from ._writer import TransactionalWriter

__all__ = ["SqlAlchemyOutbox", "SqlAlchemyOutboxStore"]

_INSERTED = ("message_id", "message_name", "topic", "key", "headers", "payload")


def _table(name: Table) -> sa.Table:
    """The outbox table (the columns of `anycqrs.outbox._sql.schema`)."""
    table = sa_table(
        name,
        sa.MetaData(),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("message_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("message_name", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255)),
        sa.Column("headers", JsonText, nullable=False),
        sa.Column("payload", JsonText, nullable=False),
        sa.Column(
            "status",
            sa.String(16),
            sa.CheckConstraint("status IN ('pending', 'sent', 'dead')"),
            nullable=False,
            server_default="pending",
        ),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("claimed_until", UtcDateTime()),
        sa.Column("claim_token", sa.String(255)),
        sa.Column("sent_at", UtcDateTime()),
        sa.Column("last_error", sa.Text()),
    )
    sa.Index(f"{name.name}_pending", table.c.status, table.c.id)
    return table


def _lock_key(table: Table) -> str:
    return f"anycqrs.outbox:{table}"


def _insert(table: sa.Table, dialect_name: str) -> Any:
    """``INSERT`` that ignores a message id already in the outbox."""
    if dialect_name in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        statement = mysql.insert(table)
        return statement.on_duplicate_key_update(message_id=statement.inserted.message_id)
    if dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing(index_elements=["message_id"])
    if dialect_name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing(index_elements=["message_id"])
    raise NotImplementedError(f"SqlAlchemyOutbox does not support the {dialect_name} dialect")


class SqlAlchemyOutbox(TransactionalWriter[Bind]):
    """Writes outbox rows through the caller's SQLAlchemy ``Session`` or
    ``Connection`` (sync), inside the caller's transaction; it never commits
    (except in `run_in_transaction`, which you ask for explicitly).

    Domain rows and events commit or roll back together. Supported
    databases: PostgreSQL, MySQL/MariaDB and SQLite. The table is created on
    first use unless ``create_schema=False`` (then create it with
    `ensure_schema`, the relay store's, or a migration); on MySQL/MariaDB,
    whose DDL would commit your open transaction, that creation runs on a
    connection of its own from the same engine.

    Args:
        bind: the application's ``sqlalchemy.orm.Session`` or
            ``sqlalchemy.engine.Connection``.
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
        import sqlalchemy
        from sqlalchemy.orm import Session

        from anycqrs import NotificationEvent
        from anycqrs.outbox import SqlAlchemyOutbox

        engine = sqlalchemy.create_engine("sqlite://")
        with Session(engine) as session, session.begin():
            SqlAlchemyOutbox(session).add(NotificationEvent(payload={"id": 42}, topic="orders"))
        ```
    """

    __slots__ = ("_statement",)

    def __init__(
        self,
        bind: Bind,
        *,
        table: str = DEFAULT_TABLE,
        create_schema: bool = True,
        compression: Compression | None = None,
        tracer_provider: Any = None,
    ) -> None:
        name = table_name(table, "outbox table")
        outbox = _table(name)
        super().__init__(
            SqlAlchemyCaller(
                bind, name, outbox.metadata, key=_lock_key(name), create=create_schema
            ),
            insert=outbox,
            compression=compression,
            tracer_provider=tracer_provider,
        )
        self._statement: Any = None

    def _rows(self, items: Iterable[OutboxItem]) -> list[tuple[Any, ...]]:
        now = utcnow()
        return insert_rows(items, as_is, now, now, compress=self._compress)

    def _insert_many(self, rows: list[tuple[Any, ...]]) -> None:
        statement = self._statement
        if statement is None:
            dialect = connection_of(self._connection).dialect.name
            statement = self._statement = _insert(self._insert, dialect)
        names = (*_INSERTED, "created_at", "next_attempt_at")
        self._connection.execute(statement, [dict(zip(names, row, strict=True)) for row in rows])

    def add(self, item: OutboxItem, /) -> None:
        """Stage ``item`` (a ``NotificationEvent`` or a broker ``Message``) in
        the current transaction; a message id already in the outbox is
        ignored (see `OutboxWriter`)."""
        rows = self._rows((item,)) if self._tracer is None else self._traced_rows((item,))
        self._caller.prepare()
        self._insert_many(rows)


class _Borrowed:
    """The application's engine, as a relay store holds it: never disposed."""

    __slots__ = ("engine",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        """Nothing to close: the application owns the engine."""


class SqlAlchemyOutboxStore(RelayStore[_Borrowed]):
    """The relay's side of a SQLAlchemy outbox, on its own connections from a
    sync ``Engine`` (PostgreSQL, MySQL/MariaDB, SQLite).

    Many relays may run at once: a claim locks due rows with ``SELECT ...
    FOR UPDATE SKIP LOCKED`` (SQLite: its write lock) and stamps them with a
    lease and the relay's claim token, then commits; the outcome is written
    afterwards, only to rows still carrying the token (see `OutboxStore`).
    Methods are blocking (the relay calls them in a worker thread).

    Args:
        engine: a sync SQLAlchemy ``Engine``; the application owns it (`close`
            doesn't dispose of it).
        table: table name (as given to `SqlAlchemyOutbox`).

    Example:
        ```python
        store = SqlAlchemyOutboxStore(sqlalchemy.create_engine("mysql+pymysql://app@db/app"))
        async with anyio.create_task_group() as tg:
            await tg.start(OutboxRelay(store, broker).run)
        ```
    """

    __slots__ = ("_outbox",)

    def __init__(self, engine: Engine, *, table: str = DEFAULT_TABLE) -> None:
        super().__init__(table, _Borrowed(engine))
        self._outbox = _table(self._table)

    def ensure_schema(self) -> None:
        """Create the table and index if missing (idempotent, safe to race)."""
        with self._db.engine.begin() as connection:
            create_tables(connection, self._outbox.metadata, _lock_key(self._table))

    def _columns(self) -> list[sa.Column[Any]]:
        return [self._outbox.c[name.strip()] for name in COLUMNS.split(",")]

    def claim(
        self, *, limit: int, now: datetime, lease: float, token: str
    ) -> Sequence[OutboxRecord]:
        """Claim up to ``limit`` due pending rows (see `OutboxStore`)."""
        c = self._outbox.c
        due = (
            sa.select(c.id)
            .where(
                (c.status == "pending")
                & (c.next_attempt_at <= now)
                & (c.claimed_until.is_(None) | (c.claimed_until <= now))
            )
            .order_by(c.id)
            .limit(limit)
        )
        stamp = {"claimed_until": now + timedelta(seconds=lease), "claim_token": token}
        with self._db.engine.begin() as connection:
            rows = lease_rows(connection, self._outbox, due, stamp, self._columns())
        return sorted((record(row, as_is) for row in rows), key=lambda claimed: claimed.id)

    def settle(self, token: str, settlement: OutboxSettlement, *, now: datetime) -> None:
        """Apply a batch's outcome in one transaction (see `OutboxStore`)."""
        t = self._outbox
        c = t.c
        held = (c.id == sa.bindparam("row_id")) & (c.claim_token == token)
        free = {"claimed_until": None, "claim_token": None}
        counted = {"attempts": c.attempts + 1, **free}
        with self._db.engine.begin() as connection:
            if settlement.sent:
                connection.execute(
                    t.update()
                    .where(c.id.in_(list(settlement.sent)) & (c.claim_token == token))
                    .values(status="sent", sent_at=now, **counted)
                )
            if settlement.retry:
                connection.execute(
                    t.update()
                    .where(held)
                    .values(
                        next_attempt_at=sa.bindparam("when"),
                        last_error=sa.bindparam("error"),
                        **counted,
                    ),
                    [
                        {"row_id": row_id, "when": when, "error": error}
                        for row_id, when, error in settlement.retry
                    ],
                )
            if settlement.dead:
                connection.execute(
                    t.update()
                    .where(held)
                    .values(status="dead", last_error=sa.bindparam("error"), **counted),
                    [{"row_id": row_id, "error": error} for row_id, error in settlement.dead],
                )
            if settlement.release:
                connection.execute(
                    t.update()
                    .where(c.id.in_(list(settlement.release)) & (c.claim_token == token))
                    .values(**free)
                )

    def _read(self, query: Any) -> list[Any]:
        with self._db.engine.connect() as connection:
            return list(connection.execute(query).all())

    def fetch(
        self, *, status: OutboxStatus | None = None, limit: int = 100, after_id: int = 0
    ) -> list[OutboxRecord]:
        """Rows in id order (optionally of one ``status``), for inspection."""
        c = self._outbox.c
        where = c.id > after_id
        if status is not None:
            where = where & (c.status == status.value)
        query = sa.select(*self._columns()).where(where).order_by(c.id).limit(limit)
        return [record(row, as_is) for row in self._read(query)]

    def counts(self) -> dict[OutboxStatus, int]:
        """How many rows are in each status."""
        c = self._outbox.c
        return tally(self._read(sa.select(c.status, sa.func.count()).group_by(c.status)))

    def _write(self, statement: Any) -> int:
        with self._db.engine.begin() as connection:
            return int(connection.execute(statement).rowcount)

    def retry_dead(self, ids: Iterable[int] | None = None, *, now: datetime | None = None) -> int:
        """Put dead rows (all, or those in ``ids``) back to pending with a fresh
        attempt budget; returns how many. ``last_error`` is kept."""
        c = self._outbox.c
        where = c.status == "dead"
        if ids is not None:
            where = where & c.id.in_(list(ids))
        return self._write(
            self._outbox.update()
            .where(where)
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=now or utcnow(),
                claimed_until=None,
                claim_token=None,
            )
        )

    def purge_sent(self, before: datetime) -> int:
        """Delete rows sent before ``before``; returns how many."""
        c = self._outbox.c
        return self._write(self._outbox.delete().where((c.status == "sent") & (c.sent_at < before)))
