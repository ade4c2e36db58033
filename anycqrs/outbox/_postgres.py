"""PostgreSQL outbox (psycopg 3): a writer on the caller's connection and a
relay store that claims rows with ``FOR UPDATE SKIP LOCKED`` plus a lease."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Union

from .._persistence import (
    PooledConnections,
    PostgresCaller,
    PostgresConnections,
    Table,
    as_is,
    create_schema,
    store_connections,
    table_name,
    utcnow,
)
from .._persistence._postgres import Connect
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

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["PostgresOutbox", "PostgresOutboxStore"]

_SET = Transitions.using("%s")


def _schema(table: Table) -> tuple[str, ...]:
    return schema(
        table,
        id_column="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        uuid="UUID",
        timestamp="TIMESTAMPTZ",
        default_now=" DEFAULT now()",
    )


def _lock_key(table: Table) -> str:
    """The advisory lock serializing the schema's creation."""
    return f"anycqrs.outbox:{table}"


class PostgresOutbox(TransactionalWriter["psycopg.Connection[Any]"]):
    """Writes outbox rows on the caller's psycopg 3 connection, inside the
    caller's transaction; it never commits (except in
    `run_in_transaction`, which you ask for explicitly).

    The table is created on first use unless ``create_schema=False`` (then
    create it with `ensure_schema`, the relay's startup, or a migration).

    **One writer per request, from a pool**: so concurrent requests don't
    share one connection, borrow one from a ``psycopg_pool.ConnectionPool``
    per unit of work and bind a writer to it (a writer is cheap: a few
    attributes). The pool's ``connection()`` block commits when it exits
    normally and rolls back on an error. Pass ``create_schema=False`` (and
    create the table once at startup) so a new writer doesn't check for its
    table on its first ``add``:

    ```python
    def place_order(order_id: int) -> None:
        with pool.connection() as conn:  # commits both rows, or neither
            conn.execute("INSERT INTO orders (id) VALUES (%s)", (order_id,))
            outbox = PostgresOutbox(conn, create_schema=False)
            outbox.add(NotificationEvent(payload=OrderPlaced(order_id), topic="orders"))

    await anyio.to_thread.run_sync(place_order, 42)
    ```

    Args:
        connection: the application's ``psycopg.Connection``.
        table: table name (lowercase letters, digits, ``_``).
        create_schema: check for the table on first use and create it if missing.
        compression: compress payloads, `"zlib"` or `"zstd"` (needs
            `zstandard`); recorded per row, so reading is transparent and rows
            of any setting mix (see the outbox docs).
        tracer_provider: an OpenTelemetry `TracerProvider` for the
            `create` span of each `add` (default: the global one, read now;
            none set: no span). The row's headers carry its trace context.

    Example:
        ```python
        conn = psycopg.connect(dsn)
        outbox = PostgresOutbox(conn)

        def place_order(order_id: int) -> None:
            with conn.transaction():  # both rows or neither
                conn.execute("INSERT INTO orders (id) VALUES (%s)", (order_id,))
                outbox.add(NotificationEvent(payload=OrderPlaced(order_id), topic="orders"))

        await anyio.to_thread.run_sync(place_order, 42)
        ```
    """

    __slots__ = ()

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        *,
        table: str = DEFAULT_TABLE,
        create_schema: bool = True,
        compression: Compression | None = None,
        tracer_provider: Any = None,
    ) -> None:
        name = table_name(table, "outbox table")
        super().__init__(
            PostgresCaller(
                connection, name, _schema(name), create=create_schema, key=_lock_key(name)
            ),
            insert=(
                f"INSERT INTO {name.quoted} (message_id, message_name, topic, key, "
                "headers, payload) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (message_id) DO NOTHING"
            ).encode(),
            compression=compression,
            tracer_provider=tracer_provider,
        )

    def _rows(self, items: Iterable[OutboxItem]) -> list[tuple[Any, ...]]:
        return insert_rows(items, as_is, compress=self._compress)

    def _insert_many(self, rows: list[tuple[Any, ...]]) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(self._insert, rows)


class PostgresOutboxStore(RelayStore[Union[PostgresConnections, PooledConnections]]):
    """The relay's side of a PostgreSQL outbox, on its own connection.

    Many relays may run at once: a claim is one statement that picks due rows
    with ``SELECT ... FOR UPDATE SKIP LOCKED`` and stamps them with a lease
    (``claimed_until``) and the relay's claim token, then commits. Publishing
    happens **outside** any row lock or open transaction; the outcome is
    written afterwards, only to rows still carrying the token. A relay that
    dies mid-batch leaves its rows to be claimed again when the lease ends.

    Methods are blocking (the relay calls them in a worker thread) and
    serialized by a lock. A broken connection is dropped and reopened on the
    next call.

    Args:
        conninfo: a libpq DSN/URL, or a zero-argument callable returning a new
            ``psycopg.Connection`` (autocommit is switched on); give this or
            ``pool``.
        table: table name (as given to `PostgresOutbox`).
        pool: a ``psycopg_pool.ConnectionPool`` to borrow a connection from
            per call instead (extra ``postgres``); `close` leaves it open.

    Example:
        ```python
        store = PostgresOutboxStore("postgresql://app@db/app")
        async with anyio.create_task_group() as tg:
            await tg.start(OutboxRelay(store, broker).run)
        ```
    """

    __slots__ = ()

    def __init__(
        self,
        conninfo: Union[str, Connect, None] = None,
        *,
        table: str = DEFAULT_TABLE,
        pool: psycopg_pool.ConnectionPool[Any] | None = None,
    ) -> None:
        super().__init__(table, store_connections("PostgresOutboxStore", conninfo, pool))

    def ensure_schema(self) -> None:
        """Create the table and index if missing (idempotent, safe to race)."""
        statements = _schema(self._table)
        self._db.call(
            lambda connection: create_schema(connection, _lock_key(self._table), statements)
        )

    def claim(
        self, *, limit: int, now: datetime, lease: float, token: str
    ) -> Sequence[OutboxRecord]:
        """Claim up to ``limit`` due pending rows with ``FOR UPDATE SKIP LOCKED``
        (see `OutboxStore`)."""
        sql = (
            f"WITH due AS (SELECT id FROM {self._quoted} WHERE status = 'pending' "
            "AND next_attempt_at <= %(now)s "
            "AND (claimed_until IS NULL OR claimed_until <= %(now)s) "
            "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            f"UPDATE {self._quoted} AS o SET claimed_until = %(until)s, claim_token = %(token)s "
            f"FROM due WHERE o.id = due.id RETURNING "
            + ", ".join(f"o.{column.strip()}" for column in COLUMNS.split(","))
        ).encode()
        params = {
            "now": now,
            "limit": limit,
            "until": now + timedelta(seconds=lease),
            "token": token,
        }

        def claim(connection: psycopg.Connection[Any]) -> list[OutboxRecord]:
            rows = connection.execute(sql, params).fetchall()
            return sorted((record(row, as_is) for row in rows), key=lambda claimed: claimed.id)

        return self._db.call(claim)

    def settle(self, token: str, settlement: OutboxSettlement, *, now: datetime) -> None:
        """Apply a batch's outcome in one transaction (see `OutboxStore`)."""
        table = self._quoted
        held = "WHERE id = %s AND claim_token = %s"

        def settle(connection: psycopg.Connection[Any]) -> None:
            with connection.transaction(), connection.cursor() as cursor:
                if settlement.sent:
                    cursor.execute(
                        f"UPDATE {table} SET {_SET.sent} "
                        "WHERE id = ANY(%s) AND claim_token = %s".encode(),
                        (now, list(settlement.sent), token),
                    )
                if settlement.retry:
                    cursor.executemany(
                        f"UPDATE {table} SET {_SET.retry} {held}".encode(),
                        [(when, error, row_id, token) for row_id, when, error in settlement.retry],
                    )
                if settlement.dead:
                    cursor.executemany(
                        f"UPDATE {table} SET {_SET.dead} {held}".encode(),
                        [(error, row_id, token) for row_id, error in settlement.dead],
                    )
                if settlement.release:
                    cursor.execute(
                        f"UPDATE {table} SET {RELEASE} "
                        "WHERE id = ANY(%s) AND claim_token = %s".encode(),
                        (list(settlement.release), token),
                    )

        self._db.call(settle)

    def fetch(
        self, *, status: OutboxStatus | None = None, limit: int = 100, after_id: int = 0
    ) -> list[OutboxRecord]:
        """Rows in id order (optionally of one ``status``), for inspection."""
        sql, params = fetch_query(self._quoted, "%s", status=status, limit=limit, after_id=after_id)
        query = sql.encode()
        rows = self._db.call(lambda connection: connection.execute(query, params).fetchall())
        return [record(row, as_is) for row in rows]

    def counts(self) -> dict[OutboxStatus, int]:
        """How many rows are in each status."""
        sql = f"SELECT status, COUNT(*) FROM {self._quoted} GROUP BY status".encode()
        return tally(self._db.call(lambda connection: connection.execute(sql).fetchall()))

    def retry_dead(self, ids: Iterable[int] | None = None, *, now: datetime | None = None) -> int:
        """Put dead rows (all, or those in ``ids``) back to pending with a fresh
        attempt budget; returns how many. ``last_error`` is kept."""
        at = now or utcnow()
        sql = f"UPDATE {self._quoted} SET {_SET.revive} WHERE status = 'dead'"
        params: tuple[Any, ...]
        if ids is None:
            query, params = sql.encode(), (at,)
        else:
            query, params = (sql + " AND id = ANY(%s)").encode(), (at, list(ids))
        return self._db.call(lambda connection: connection.execute(query, params).rowcount)

    def purge_sent(self, before: datetime) -> int:
        """Delete rows sent before ``before``; returns how many."""
        sql = f"DELETE FROM {self._quoted} WHERE status = 'sent' AND sent_at < %s".encode()
        return self._db.call(lambda connection: connection.execute(sql, (before,)).rowcount)
