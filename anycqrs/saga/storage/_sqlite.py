"""Saga storage on SQLite (stdlib ``sqlite3``, called in worker threads)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from uuid import UUID

from ..._persistence import (
    SqliteConnection,
    dumps,
    loads,
    table_name,
    utc,
)
from ...errors import SagaAlreadyExistsError, SagaNotFoundError
from .._types import SagaState, SagaStatus, SagaStepEntry, StepRecord
from ._sql import COLUMNS, claimable, log_values, stale_write, state, step_entries

__all__ = ["SqliteSagaStorage"]


class SqliteSagaStorage:
    """Saga state in a SQLite database (a file, or ``":memory:"``).

    One connection, used from worker threads one call at a time; every write
    (status + context + step-log entries + version check) is one
    ``BEGIN IMMEDIATE`` transaction in one thread hop. Several processes may
    share a database file: recovery claims take SQLite's write lock (``BEGIN IMMEDIATE``), so a saga
    is leased to one worker at a time.

    The schema is created on first use:

    ```sql
    CREATE TABLE anycqrs_sagas (
        saga_id TEXT PRIMARY KEY, saga_name TEXT, status TEXT, context TEXT (JSON),
        version INTEGER, recovery_attempts INTEGER, lease_owner TEXT,
        lease_until REAL, created_at REAL, updated_at REAL)
    CREATE TABLE anycqrs_saga_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, saga_id TEXT, step_name TEXT,
        action TEXT, status TEXT, details TEXT (JSON), created_at REAL)
    ```

    Args:
        path: the database file, or ``":memory:"`` (default).
        sagas_table: name of the saga table.
        log_table: name of the step-log table.
        busy_timeout: seconds to wait for another process's write lock.

    Example:
        ```python
        storage = SqliteSagaStorage("sagas.db")
        mediator = anycqrs.saga.bootstrap.bootstrap(sagas_mapper=..., saga_storage=storage)
        ...
        storage.close()
        ```
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        sagas_table: str = "anycqrs_sagas",
        log_table: str = "anycqrs_saga_log",
        busy_timeout: float = 30.0,
    ) -> None:
        self._path = os.fspath(path)
        sagas = table_name(sagas_table, "sagas_table")
        log = table_name(log_table, "log_table")
        self._sagas, self._log = sagas.quoted, log.quoted
        self._schema = f"""
            CREATE TABLE IF NOT EXISTS {self._sagas} (
                saga_id TEXT PRIMARY KEY,
                saga_name TEXT NOT NULL,
                status TEXT NOT NULL,
                context TEXT NOT NULL,
                version INTEGER NOT NULL,
                recovery_attempts INTEGER NOT NULL DEFAULT 0,
                lease_owner TEXT,
                lease_until REAL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {sagas.index("_pending", sqlite=True)} (status, updated_at);
            CREATE TABLE IF NOT EXISTS {self._log} (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                saga_id TEXT NOT NULL,
                step_name TEXT NOT NULL,
                action TEXT NOT NULL,
                status TEXT NOT NULL,
                details TEXT,
                created_at REAL NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {log.index("_saga", sqlite=True)} (saga_id, seq);
            """
        self._db = SqliteConnection(self._path, timeout=busy_timeout, setup=self._setup)
        self._insert_log = (
            f"INSERT INTO {self._log} (saga_id, step_name, action, status, details, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )

    @property
    def path(self) -> str:
        """The database path."""
        return self._path

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        self._db.close()

    def _setup(self, conn: sqlite3.Connection) -> None:
        if self._path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(self._schema)

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
        key = str(saga_id)
        payload = dumps(context)
        rows = log_values(entries, key)

        def work(conn: sqlite3.Connection) -> int:
            now = time.time()
            conn.execute(
                f"INSERT INTO {self._sagas} (saga_id, saga_name, status, context, "
                "version, created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
                (key, saga_name, status.value, payload, now, now),
            )
            if rows:
                conn.executemany(self._insert_log, rows)
            return 1

        try:
            return await self._db.run_write(work)
        except sqlite3.IntegrityError:
            raise SagaAlreadyExistsError(saga_id) from None

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
        key = str(saga_id)
        payload = None if context is None else dumps(context)
        status_value = None if status is None else status.value
        rows = log_values(entries, key)

        def work(conn: sqlite3.Connection) -> int:
            updated = conn.execute(
                f"UPDATE {self._sagas} SET version = version + 1, updated_at = ?, "
                "status = COALESCE(?, status), context = COALESCE(?, context) "
                "WHERE saga_id = ? AND version = ?",
                (time.time(), status_value, payload, key, expected_version),
            ).rowcount
            if updated != 1:
                exists = conn.execute(
                    f"SELECT 1 FROM {self._sagas} WHERE saga_id = ?", (key,)
                ).fetchone()
                raise stale_write(saga_id, expected_version, exists=exists is not None)
            if rows:
                conn.executemany(self._insert_log, rows)
            return expected_version + 1

        return await self._db.run_write(work)

    @staticmethod
    def _state(row: Sequence[Any]) -> SagaState:
        return state(row, UUID, loads, utc)

    async def load_saga_state(self, saga_id: UUID) -> SagaState:
        """The saga's state (see `SagaStorage`)."""

        def work(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                f"SELECT {COLUMNS} FROM {self._sagas} WHERE saga_id = ?", (str(saga_id),)
            ).fetchone()

        row = await self._db.run(work)
        if row is None:
            raise SagaNotFoundError(saga_id)
        return self._state(row)

    async def get_step_history(self, saga_id: UUID) -> list[SagaStepEntry]:
        """The step log, oldest first (see `SagaStorage`)."""

        def work(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                f"SELECT step_name, action, status, details, created_at FROM {self._log} "
                "WHERE saga_id = ? ORDER BY seq",
                (str(saga_id),),
            ).fetchall()

        return step_entries(await self._db.run(work), loads, utc)

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
        """Lease sagas for recovery (see `SagaStorage`)."""
        taken, taken_params = claimable(saga_names, retry_compensations, "?")

        def work(conn: sqlite3.Connection) -> list[Any]:
            now = time.time()
            where = f"{taken} AND (lease_until IS NULL OR lease_until <= ?)"
            params: list[Any] = [owner, now + lease_seconds, *taken_params, now]
            if saga_id is not None:
                where += " AND saga_id = ?"
                params.append(str(saga_id))
            else:
                where += " AND updated_at <= ?"
                params.append(now - stale_after)
            params.append(limit)
            rows = conn.execute(
                f"UPDATE {self._sagas} SET lease_owner = ?, lease_until = ?, "
                "recovery_attempts = recovery_attempts + 1, version = version + 1 "
                f"WHERE saga_id IN (SELECT saga_id FROM {self._sagas} WHERE {where} "
                f"ORDER BY updated_at LIMIT ?) RETURNING {COLUMNS}",
                params,
            ).fetchall()
            return sorted(rows, key=lambda row: row[7])

        return [self._state(row) for row in await self._db.run_write(work)]

    async def release(self, saga_id: UUID, owner: str) -> None:
        """Drop ``owner``'s lease (see `SagaStorage`)."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {self._sagas} SET lease_owner = NULL, lease_until = NULL "
                "WHERE saga_id = ? AND lease_owner = ?",
                (str(saga_id), owner),
            )

        await self._db.run(work)
