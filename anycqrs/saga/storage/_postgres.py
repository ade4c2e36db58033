"""Saga storage on PostgreSQL (psycopg 3 sync connections in worker threads)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..._persistence import as_is, create_schema, dumps, store_connections, table_name
from ...errors import SagaAlreadyExistsError, SagaNotFoundError
from .._types import SagaState, SagaStatus, SagaStepEntry, StepRecord
from ._sql import (
    COLUMNS,
    COMPENSATION_FAILED,
    UNFINISHED,
    claimable,
    log_values,
    stale_write,
    state,
    step_entries,
)

if TYPE_CHECKING:
    import psycopg_pool

__all__ = ["PostgresSagaStorage"]
_VALUE = "(%s::text, %s::text, %s::text, %s::jsonb, to_timestamp(%s::float8))"


class PostgresSagaStorage:
    """Saga state in PostgreSQL.

    Blocking psycopg 3 connections are used in worker threads: from a small
    internal pool (``dsn``), or borrowed per call from your
    ``psycopg_pool.ConnectionPool`` (``pool=``), which then sizes and closes
    them and is shared with the rest of the application. Every write
    (status + context + step-log entries + version check) is **one SQL
    statement** (data-modifying CTEs), so one network round trip and one
    thread hop per step. Recovery claims use
    ``FOR UPDATE SKIP LOCKED`` plus a lease column, so many workers in many
    processes never recover one saga at once.

    The schema is created on first use (under an advisory lock):

    ```sql
    CREATE TABLE anycqrs_sagas (
        saga_id uuid PRIMARY KEY, saga_name text, status text, context jsonb,
        version bigint, recovery_attempts integer, lease_owner text,
        lease_until timestamptz, created_at timestamptz, updated_at timestamptz)
    CREATE TABLE anycqrs_saga_log (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, saga_id uuid,
        step_name text, action text, status text, details jsonb,
        created_at timestamptz)
    ```

    Args:
        dsn: a libpq connection string, e.g. ``postgresql://user@host:5432/db``
            (give this or ``pool``).
        sagas_table: name of the saga table (may be schema-qualified, like
            every table name: lowercase letters, digits and ``_``).
        log_table: name of the step-log table.
        max_connections: size of the internal pool (with ``dsn``).
        pool: a ``psycopg_pool.ConnectionPool`` to borrow connections from
            instead (extra ``postgres``); `close` leaves it open.

    Example:
        ```python
        storage = PostgresSagaStorage("postgresql://postgres@127.0.0.1:5432/app")
        mediator = anycqrs.saga.bootstrap.bootstrap(sagas_mapper=..., saga_storage=storage)
        ...
        storage.close()
        ```

        With the application's pool:

        ```python
        pool = psycopg_pool.ConnectionPool("postgresql://postgres@127.0.0.1:5432/app")
        storage = PostgresSagaStorage(pool=pool)
        ```
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        sagas_table: str = "anycqrs_sagas",
        log_table: str = "anycqrs_saga_log",
        max_connections: int = 8,
        pool: psycopg_pool.ConnectionPool[Any] | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        sagas = table_name(sagas_table, "sagas_table")
        log = table_name(log_table, "log_table")
        self._sagas, self._log = sagas.quoted, log.quoted
        self._schema_key = f"anycqrs_saga_schema:{sagas}"
        self._schema = (
            f"""CREATE TABLE IF NOT EXISTS {self._sagas} (
                saga_id uuid PRIMARY KEY,
                saga_name text NOT NULL,
                status text NOT NULL,
                context jsonb NOT NULL,
                version bigint NOT NULL,
                recovery_attempts integer NOT NULL DEFAULT 0,
                lease_owner text,
                lease_until timestamptz,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            )""",
            f"CREATE INDEX IF NOT EXISTS {sagas.index('_pending')} (updated_at) WHERE {UNFINISHED}",
            f"CREATE INDEX IF NOT EXISTS {sagas.index('_compensation_failed')} (updated_at) "
            f"WHERE {COMPENSATION_FAILED}",
            f"""CREATE TABLE IF NOT EXISTS {self._log} (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                saga_id uuid NOT NULL,
                step_name text NOT NULL,
                action text NOT NULL,
                status text NOT NULL,
                details jsonb,
                created_at timestamptz NOT NULL
            )""",
            f"CREATE INDEX IF NOT EXISTS {log.index('_saga')} (saga_id, seq)",
        )
        self._db = store_connections(
            "PostgresSagaStorage", dsn, pool, size=max_connections, setup=self._setup
        )
        self._save_sql: dict[int, str] = {}
        self._create_sql: dict[int, str] = {}

    def close(self) -> None:
        """Close the internal pool's connections (a ``pool=`` stays open)."""
        self._db.close()

    def _setup(self, conn: Any) -> None:
        create_schema(conn, self._schema_key, self._schema)

    # -- statements -------------------------------------------------------

    def _log_cte(self, source: str, count: int) -> str:
        values = ", ".join([_VALUE] * count)
        return (
            f", l AS (INSERT INTO {self._log} "
            "(saga_id, step_name, action, status, details, created_at) "
            f"SELECT {source}.saga_id, v.* FROM {source} CROSS JOIN (VALUES {values}) "
            "AS v(step_name, action, status, details, created_at))"
        )

    def _save_statement(self, count: int) -> str:
        sql = self._save_sql.get(count)
        if sql is None:
            sql = (
                f"WITH u AS (UPDATE {self._sagas} SET version = version + 1, "
                "updated_at = now(), status = COALESCE(%s::text, status), "
                "context = COALESCE(%s::jsonb, context) "
                "WHERE saga_id = %s AND version = %s RETURNING saga_id, version)"
                + (self._log_cte("u", count) if count else "")
                + " SELECT version FROM u"
            )
            self._save_sql[count] = sql
        return sql

    def _create_statement(self, count: int) -> str:
        sql = self._create_sql.get(count)
        if sql is None:
            sql = (
                f"WITH s AS (INSERT INTO {self._sagas} (saga_id, saga_name, status, context, "
                "version, created_at, updated_at) VALUES (%s, %s, %s, %s::jsonb, 1, now(), now()) "
                "ON CONFLICT (saga_id) DO NOTHING RETURNING saga_id)"
                + (self._log_cte("s", count) if count else "")
                + " SELECT count(*) FROM s"
            )
            self._create_sql[count] = sql
        return sql

    @staticmethod
    def _log_params(records: Sequence[StepRecord]) -> list[Any]:
        return list(chain.from_iterable(log_values(records)))

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
        """Insert a new saga (see `SagaStorage`): one statement."""
        sql = self._create_statement(len(entries))
        params = [saga_id, saga_name, status.value, dumps(context), *self._log_params(entries)]

        def work(conn: Any) -> int:
            row = conn.execute(sql, params).fetchone()
            return int(row[0])

        if await self._db.run(work) != 1:
            raise SagaAlreadyExistsError(saga_id)
        return 1

    async def save(
        self,
        saga_id: UUID,
        expected_version: int,
        *,
        status: SagaStatus | None = None,
        context: Mapping[str, Any] | None = None,
        entries: Sequence[StepRecord] = (),
    ) -> int:
        """Write atomically with a version check (see `SagaStorage`): one statement."""
        sql = self._save_statement(len(entries))
        params = [
            None if status is None else status.value,
            None if context is None else dumps(context),
            saga_id,
            expected_version,
            *self._log_params(entries),
        ]

        def work(conn: Any) -> int:
            row = conn.execute(sql, params).fetchone()
            if row is not None:
                return int(row[0])
            exists = conn.execute(
                f"SELECT 1 FROM {self._sagas} WHERE saga_id = %s", (saga_id,)
            ).fetchone()
            raise stale_write(saga_id, expected_version, exists=exists is not None)

        return await self._db.run(work)

    @staticmethod
    def _state(row: Sequence[Any]) -> SagaState:
        return state(row, as_is, as_is, as_is)

    async def load_saga_state(self, saga_id: UUID) -> SagaState:
        """The saga's state (see `SagaStorage`)."""

        def work(conn: Any) -> Any:
            return conn.execute(
                f"SELECT {COLUMNS} FROM {self._sagas} WHERE saga_id = %s", (saga_id,)
            ).fetchone()

        row = await self._db.run(work)
        if row is None:
            raise SagaNotFoundError(saga_id)
        return self._state(row)

    async def get_step_history(self, saga_id: UUID) -> list[SagaStepEntry]:
        """The step log, oldest first (see `SagaStorage`)."""

        def work(conn: Any) -> list[Any]:
            rows: list[Any] = conn.execute(
                f"SELECT step_name, action, status, details, created_at FROM {self._log} "
                "WHERE saga_id = %s ORDER BY seq",
                (saga_id,),
            ).fetchall()
            return rows

        return step_entries(await self._db.run(work), as_is, as_is)

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
        taken, taken_params = claimable(saga_names, retry_compensations, "%s")
        where = f"{taken} AND (lease_until IS NULL OR lease_until <= now())"
        params: list[Any] = [owner, float(lease_seconds), *taken_params]
        if saga_id is not None:
            where += " AND saga_id = %s"
            params.append(saga_id)
        else:
            where += " AND updated_at <= now() - make_interval(secs => %s)"
            params.append(float(stale_after))
        params.append(limit)
        sql = (
            f"UPDATE {self._sagas} SET lease_owner = %s, "
            "lease_until = now() + make_interval(secs => %s), "
            "recovery_attempts = recovery_attempts + 1, version = version + 1 "
            f"WHERE saga_id IN (SELECT saga_id FROM {self._sagas} WHERE {where} "
            f"ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
        )

        def work(conn: Any) -> list[Any]:
            rows: list[Any] = conn.execute(sql, params).fetchall()
            return rows

        rows = sorted(await self._db.run(work), key=lambda row: row[7])
        return [self._state(row) for row in rows]

    async def release(self, saga_id: UUID, owner: str) -> None:
        """Drop ``owner``'s lease (see `SagaStorage`)."""

        def work(conn: Any) -> None:
            conn.execute(
                f"UPDATE {self._sagas} SET lease_owner = NULL, lease_until = NULL "
                "WHERE saga_id = %s AND lease_owner = %s",
                (saga_id, owner),
            )

        await self._db.run(work)
