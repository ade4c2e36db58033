"""Saga storage on SQLAlchemy 2 (a sync ``Engine``, called in worker threads):
PostgreSQL, MySQL/MariaDB, SQLite and whatever else SQLAlchemy drives."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..._persistence import as_is, dumps, in_thread, loads, table_name, utc, utcnow
from ..._persistence._sqlalchemy import (
    JsonText,
    UtcDateTime,
    create_tables,
    lease_rows,
    sa_table,
)
from ...errors import SagaAlreadyExistsError, SagaNotFoundError
from .._types import SagaState, SagaStatus, SagaStepEntry, StepRecord
from ._sql import stale_write, state, step_entries

__all__ = ["SqlAlchemySagaStorage"]

_UNFINISHED = ("PENDING", "RUNNING", "COMPENSATING")


class SqlAlchemySagaStorage:
    """Saga state in any database SQLAlchemy 2 drives (tested on PostgreSQL,
    MariaDB and SQLite).

    The engine is a **sync** one (``sqlalchemy.create_engine``); its
    connections are used in worker threads, one thread hop per operation, so
    the storage runs under asyncio and trio alike. Every write (status +
    context + step-log entries + version check) is one transaction.
    Recovery claims lock the candidates with ``FOR UPDATE SKIP LOCKED``
    (PostgreSQL, MySQL 8, MariaDB 10.6+) plus a lease column, in one
    ``UPDATE ... RETURNING`` where the database has it, so many workers never
    recover one saga at once; on SQLite the claim's ``UPDATE`` takes the
    database's write lock.

    The tables are created on first use (``CREATE TABLE`` through
    ``MetaData.create_all``): ``anycqrs_sagas`` (``saga_id`` uuid,
    ``saga_name``, ``status``, ``context`` JSON text, ``version``,
    ``recovery_attempts``, ``lease_owner``, ``lease_until``, ``created_at``,
    ``updated_at``) and ``anycqrs_saga_log`` (``seq``, ``saga_id``,
    ``step_name``, ``action``, ``status``, ``details`` JSON text,
    ``created_at``). Times are UTC.

    Args:
        engine: a sync SQLAlchemy ``Engine``, e.g.
            ``create_engine("mysql+pymysql://app@db/app")``. The application
            owns it (`close` doesn't dispose of it).
        sagas_table: name of the saga table (may be schema-qualified, like
            every table name: lowercase letters, digits and ``_``).
        log_table: name of the step-log table.

    Example:
        ```python
        import sqlalchemy

        from anycqrs.saga.storage import SqlAlchemySagaStorage

        engine = sqlalchemy.create_engine("mysql+pymysql://app@db:3306/app")
        storage = SqlAlchemySagaStorage(engine)
        mediator = anycqrs.saga.bootstrap.bootstrap(sagas_mapper=..., saga_storage=storage)
        ```
    """

    def __init__(
        self,
        engine: Engine,
        *,
        sagas_table: str = "anycqrs_sagas",
        log_table: str = "anycqrs_saga_log",
    ) -> None:
        sagas_name = table_name(sagas_table, "sagas_table")
        log_name = table_name(log_table, "log_table")
        self._engine = engine
        self._metadata = sa.MetaData()
        self._sagas = sagas = sa_table(
            sagas_name,
            self._metadata,
            sa.Column("saga_id", sa.Uuid(), primary_key=True),
            sa.Column("saga_name", sa.String(255), nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("context", JsonText, nullable=False),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.Column("recovery_attempts", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("lease_owner", sa.String(255)),
            sa.Column("lease_until", UtcDateTime()),
            sa.Column("created_at", UtcDateTime(), nullable=False),
            sa.Column("updated_at", UtcDateTime(), nullable=False),
        )
        sa.Index(f"{sagas_name.name}_status", sagas.c.status, sagas.c.updated_at)
        self._log = log = sa_table(
            log_name,
            self._metadata,
            sa.Column(
                "seq",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            sa.Column("saga_id", sa.Uuid(), nullable=False),
            sa.Column("step_name", sa.String(255), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("details", JsonText),
            sa.Column("created_at", UtcDateTime(), nullable=False),
        )
        sa.Index(f"{log_name.name}_saga", log.c.saga_id, log.c.seq)
        self._columns = [
            sagas.c[name]
            for name in (
                "saga_id",
                "saga_name",
                "status",
                "context",
                "version",
                "recovery_attempts",
                "created_at",
                "updated_at",
            )
        ]
        self._schema_key = f"anycqrs_saga_schema:{sagas_name}"
        self._ready = False
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The engine the storage runs on."""
        return self._engine

    def close(self) -> None:
        """Nothing to close: the application owns the engine (kept so every
        SQL storage closes alike)."""

    def ensure_schema(self) -> None:
        """Create the tables and indexes if missing (idempotent, blocking;
        done on first use anyway)."""
        with self._lock:
            if not self._ready:
                with self._engine.begin() as connection:
                    create_tables(connection, self._metadata, self._schema_key)
                self._ready = True

    def _write(self, work: Any, *args: Any) -> Any:
        """``work(connection, *args)`` in one transaction (blocking)."""
        if not self._ready:
            self.ensure_schema()
        with self._engine.begin() as connection:
            return work(connection, *args)

    async def _run(self, work: Any, *args: Any) -> Any:
        return await in_thread(self._write, work, *args)

    def _log_rows(self, saga_id: UUID, records: Sequence[StepRecord]) -> list[dict[str, Any]]:
        return [
            {
                "saga_id": saga_id,
                "step_name": e.step_name,
                "action": e.action.value,
                "status": e.status.value,
                "details": None if e.details is None else dumps(e.details),
                "created_at": utc(e.at),
            }
            for e in records
        ]

    def _state(self, row: Sequence[Any]) -> SagaState:
        return state(row, as_is, loads, as_is)

    # -- protocol ---------------------------------------------------------

    async def create_saga(
        self,
        saga_id: UUID,
        saga_name: str,
        context: Mapping[str, Any],
        *,
        status: SagaStatus,
        entries: Sequence[StepRecord] = (),
    ) -> int:
        """Insert a new saga (see `SagaStorage`)."""
        payload = dumps(context)
        rows = self._log_rows(saga_id, entries)

        def work(connection: Connection) -> int:
            now = utcnow()
            connection.execute(
                self._sagas.insert().values(
                    saga_id=saga_id,
                    saga_name=saga_name,
                    status=status.value,
                    context=payload,
                    version=1,
                    recovery_attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            if rows:
                connection.execute(self._log.insert(), rows)
            return 1

        try:
            result: int = await self._run(work)
        except sa.exc.IntegrityError:
            raise SagaAlreadyExistsError(saga_id) from None
        return result

    async def save(
        self,
        saga_id: UUID,
        expected_version: int,
        *,
        status: SagaStatus | None = None,
        context: Mapping[str, Any] | None = None,
        entries: Sequence[StepRecord] = (),
    ) -> int:
        """Write atomically with a version check (see `SagaStorage`)."""
        sagas = self._sagas
        values: dict[str, Any] = {"version": sagas.c.version + 1}
        if status is not None:
            values["status"] = status.value
        if context is not None:
            values["context"] = dumps(context)
        rows = self._log_rows(saga_id, entries)
        where = (sagas.c.saga_id == saga_id) & (sagas.c.version == expected_version)

        def work(connection: Connection) -> int:
            statement = sagas.update().where(where).values(updated_at=utcnow(), **values)
            if connection.execute(statement).rowcount != 1:
                exists = connection.execute(
                    sa.select(sagas.c.saga_id).where(sagas.c.saga_id == saga_id)
                ).first()
                raise stale_write(saga_id, expected_version, exists=exists is not None)
            if rows:
                connection.execute(self._log.insert(), rows)
            return expected_version + 1

        result: int = await self._run(work)
        return result

    async def load_saga_state(self, saga_id: UUID) -> SagaState:
        """The saga's state (see `SagaStorage`)."""
        query = sa.select(*self._columns).where(self._sagas.c.saga_id == saga_id)
        row = await self._run(lambda connection: connection.execute(query).first())
        if row is None:
            raise SagaNotFoundError(saga_id)
        return self._state(row)

    async def get_step_history(self, saga_id: UUID) -> list[SagaStepEntry]:
        """The step log, oldest first (see `SagaStorage`)."""
        log = self._log
        query = (
            sa.select(log.c.step_name, log.c.action, log.c.status, log.c.details, log.c.created_at)
            .where(log.c.saga_id == saga_id)
            .order_by(log.c.seq)
        )
        rows = await self._run(lambda connection: connection.execute(query).all())
        return step_entries(rows, loads, as_is)

    async def claim(
        self,
        *,
        owner: str,
        lease_seconds: float,
        saga_id: UUID | None = None,
        stale_after: float = 0.0,
        limit: int = 1,
        saga_names: Collection[str] | None = None,
        retry_compensations: int = 0,
    ) -> list[SagaState]:
        """Lease sagas for recovery (see `SagaStorage`): ``FOR UPDATE SKIP LOCKED``."""
        c = self._sagas.c
        taken: sa.ColumnElement[bool] = c.status.in_(_UNFINISHED)
        if retry_compensations > 0:
            failed = c.status == SagaStatus.COMPENSATION_FAILED.value
            taken = taken | (failed & (c.recovery_attempts < retry_compensations))
        if saga_names is not None:
            taken = taken & c.saga_name.in_(list(saga_names))

        def work(connection: Connection) -> list[SagaState]:
            now = utcnow()
            where: sa.ColumnElement[bool] = taken & (
                c.lease_until.is_(None) | (c.lease_until <= now)
            )
            if saga_id is not None:
                where = where & (c.saga_id == saga_id)
            else:
                where = where & (c.updated_at <= now - timedelta(seconds=stale_after))
            candidates = sa.select(c.saga_id).where(where).order_by(c.updated_at).limit(limit)
            lease = {
                "lease_owner": owner,
                "lease_until": now + timedelta(seconds=lease_seconds),
                "recovery_attempts": c.recovery_attempts + 1,
                "version": c.version + 1,
            }
            claimed = lease_rows(connection, self._sagas, candidates, lease, self._columns)
            return sorted((self._state(row) for row in claimed), key=lambda s: s.updated_at)

        result: list[SagaState] = await self._run(work)
        return result

    async def release(self, saga_id: UUID, owner: str) -> None:
        """Drop ``owner``'s lease (see `SagaStorage`)."""
        c = self._sagas.c
        statement = (
            self._sagas.update()
            .where((c.saga_id == saga_id) & (c.lease_owner == owner))
            .values(lease_owner=None, lease_until=None)
        )
        await self._run(lambda connection: connection.execute(statement))
