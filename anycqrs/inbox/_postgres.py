"""The PostgreSQL inbox (psycopg 3): a connection per open transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Union
from uuid import UUID

from .._persistence import create_schema, table_name
from .._persistence._postgres import Connect, connector
from ..errors import InboxError
from ._store import InboxStore

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["PostgresInbox"]

DEFAULT_TABLE = "anycqrs_inbox"


def _schema(quoted: str, index: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {quoted} (handler TEXT NOT NULL, message_id UUID NOT NULL, "
        "processed_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (handler, message_id))",
        f"CREATE INDEX IF NOT EXISTS {index} (processed_at)",
    ]


_RELEASE = b"RELEASE SAVEPOINT anycqrs_inbox; "
_SAVE = b"SAVEPOINT anycqrs_inbox; "


def _uuids(message_ids: Iterable[UUID]) -> bytes:
    """A ``uuid[]`` literal (a UUID's text is hex digits and dashes only)."""
    return b"'{" + ",".join(map(str, message_ids)).encode() + b"}'::uuid[]"


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, timezone.utc)


class _Handle:
    __slots__ = ("autocommit", "connection")

    def __init__(self, connection: psycopg.Connection[Any], autocommit: bool) -> None:
        self.connection = connection
        self.autocommit = autocommit


class _PostgresBackend:
    """Blocking half of `PostgresInbox` (see `anycqrs.inbox._store.Backend`).

    Connections run in autocommit mode; a transaction is an explicit
    ``BEGIN`` sent with the inbox ``INSERT`` in one pipeline (one round
    trip), ended by ``COMMIT`` or ``ROLLBACK``.
    """

    def __init__(
        self,
        conninfo: str | Connect | None,
        pool: psycopg_pool.ConnectionPool[Any] | None,
        table: str,
        concurrency: int,
        outbox_table: str | None,
    ) -> None:
        if (conninfo is None) == (pool is None):
            raise ValueError("PostgresInbox needs a conninfo/dsn or a pool (one of them)")
        if concurrency < 1:
            raise ValueError(f"max_transactions must be at least 1, got {concurrency}")
        name = table_name(table, "inbox table")
        self.concurrency = concurrency
        self._key = f"anycqrs-inbox:{name}"
        self._statements = _schema(name.quoted, name.index("_processed_at"))
        self._insert = (
            f"INSERT INTO {name.quoted} (handler, message_id, processed_at) "
            "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
        ).encode()
        self._row = (
            f"INSERT INTO {name.quoted} (handler, message_id, processed_at) VALUES (".encode()
        )
        self._resave = _RELEASE + _SAVE
        self._claim = (
            f"INSERT INTO {name.quoted} (handler, message_id, processed_at) SELECT ".encode()
        )
        self._unclaim = f"DELETE FROM {name.quoted} WHERE handler = ".encode()
        self._literals: dict[str, bytes] = {}
        self._seen = f"SELECT 1 FROM {name.quoted} WHERE handler = %s AND message_id = %s".encode()
        self._prune = f"DELETE FROM {name.quoted} WHERE processed_at < %s".encode()
        self._outbox_table = outbox_table
        self._connect = None if conninfo is None else connector(conninfo)
        self._pool = pool
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        self._ready = False
        self._writers: dict[int, Any] = {}

    def _setup(self, connection: psycopg.Connection[Any]) -> None:
        if not self._ready:
            create_schema(connection, self._key, self._statements)
            self._ready = True

    def _writer(self, connection: psycopg.Connection[Any]) -> Any:
        if self._outbox_table is None:
            return None
        writer = self._writers.get(id(connection))
        if writer is None or writer.connection is not connection:
            from ..outbox import PostgresOutbox

            writer = PostgresOutbox(connection, table=self._outbox_table)
            writer.ensure_schema()  # idle: commits on its own
            with self._lock:
                self._writers[id(connection)] = writer
        return writer

    def _checkout(self) -> _Handle:
        if self._pool is not None:
            connection = self._pool.getconn()
            handle = _Handle(connection, connection.autocommit)
            try:
                connection.autocommit = True
            except BaseException:
                self._pool.putconn(connection)
                raise
        else:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None or connection.closed:
                assert self._connect is not None
                connection = self._connect()
                connection.autocommit = True
            handle = _Handle(connection, True)
        try:
            self._setup(connection)
        except BaseException:
            self._release(handle)
            raise
        return handle

    def _release(self, handle: _Handle) -> None:
        connection = handle.connection
        if self._pool is not None:
            try:
                if not (connection.closed or connection.broken):
                    connection.autocommit = handle.autocommit
            finally:
                self._pool.putconn(connection)
            return
        if connection.closed or connection.broken:
            connection.close()
            with self._lock:
                self._writers.pop(id(connection), None)
        else:
            with self._lock:
                self._idle.append(connection)

    def ensure_schema(self) -> None:
        handle = self._checkout()
        self._release(handle)

    def begin(self, handler: str, message_id: UUID, now: float) -> Any:
        handle = self._checkout()
        connection = handle.connection
        try:
            self._writer(connection)
            if self._inserted(connection, b"BEGIN; ", handler, message_id, now):
                return handle
            connection.execute(b"ROLLBACK")
        except BaseException:
            self._end(handle, b"ROLLBACK")
            raise
        self._release(handle)
        return None

    def savepoint(
        self, handle: Any, release: bool, handler: str, message_id: UUID, now: float
    ) -> tuple[Any, bool]:
        fresh = handle is None
        if fresh:
            handle = self._checkout()
        connection = handle.connection
        try:
            if fresh:
                self._writer(connection)
            head = (
                b"BEGIN; SAVEPOINT anycqrs_inbox; " if fresh else self._resave if release else _SAVE
            )
            inserted = self._inserted(connection, head, handler, message_id, now)
        except BaseException:
            if fresh:
                self._end(handle, b"ROLLBACK")
            raise
        return handle, inserted

    def _inserted(
        self,
        connection: psycopg.Connection[Any],
        head: bytes,
        handler: str,
        message_id: UUID,
        now: float,
    ) -> bool:
        """Send `head` and the inbox ``INSERT`` as one simple-protocol query
        (literal values: the handler's quoted identity, the UUID's hex, a
        float; one execute costs a third of the CPU of pipelined ones);
        whether the row was new."""
        cursor = connection.execute(
            head
            + self._row
            + self._quoted(connection, handler)
            + b", '"
            + str(message_id).encode()
            + b"', to_timestamp("
            + repr(float(now)).encode()
            + b")) ON CONFLICT DO NOTHING"
        )
        while cursor.nextset():  # to the INSERT's result
            pass
        return bool(cursor.rowcount == 1)

    def _quoted(self, connection: psycopg.Connection[Any], handler: str) -> bytes:
        quoted = self._literals.get(handler)
        if quoted is None:
            from psycopg import sql

            quoted = self._literals[handler] = sql.Literal(handler).as_bytes(connection)
        return quoted

    def claim(
        self, handle: Any, handler: str, message_ids: Sequence[UUID], now: float
    ) -> tuple[Any, set[UUID]]:
        fresh = handle is None
        if fresh:
            handle = self._checkout()
        connection = handle.connection
        try:
            if fresh:
                self._writer(connection)
            cursor = connection.execute(
                (b"BEGIN; " if fresh else b"")
                + self._claim
                + self._quoted(connection, handler)
                + b", m, to_timestamp("
                + repr(float(now)).encode()
                + b") FROM unnest("
                + _uuids(message_ids)
                + b") AS m ORDER BY m ON CONFLICT DO NOTHING RETURNING message_id"
            )
            while cursor.nextset():  # to the INSERT's result
                pass
            new = {row[0] for row in cursor.fetchall()}
        except BaseException:
            if fresh:
                self._end(handle, b"ROLLBACK")
            raise
        return handle, new

    def finish(
        self,
        handle: Any,
        unused: dict[str, set[UUID]],
        writes: Callable[[Any], None] | None = None,
    ) -> None:
        connection = handle.connection
        deletes = [
            self._unclaim
            + self._quoted(connection, handler)
            + b" AND message_id = ANY("
            + _uuids(sorted(ids))
            + b")"
            for handler, ids in unused.items()
        ]
        if writes is None:
            self._end(handle, b"COMMIT", b"".join(delete + b"; " for delete in deletes))
            return
        try:
            self._pipelined(connection, writes, deletes)
        except BaseException:
            _roll_back(connection)
            raise
        finally:
            self._release(handle)

    @staticmethod
    def _pipelined(
        connection: psycopg.Connection[Any], writes: Callable[[Any], None], deletes: list[bytes]
    ) -> None:
        """`writes`, the `deletes` and ``COMMIT`` in one pipeline (one round
        trip; libpq 14+, else one after the other). An error stops the rest
        and the transaction stays open, aborted; a ``COMMIT`` the server
        answers with ``ROLLBACK`` (an aborted transaction) raises too."""
        import psycopg

        with connection.pipeline() if psycopg.Pipeline.is_supported() else nullcontext():
            writes(connection)
            for delete in deletes:
                connection.execute(delete)
            cursor = connection.execute(b"COMMIT")
        if cursor.statusmessage != "COMMIT":
            raise InboxError(
                f"The inbox chunk's COMMIT was answered {cursor.statusmessage!r}: a deferred "
                "write failed"
            )

    def rollback_savepoint(self, handle: Any) -> None:
        handle.connection.execute(
            b"ROLLBACK TO SAVEPOINT anycqrs_inbox; RELEASE SAVEPOINT anycqrs_inbox"
        )

    def join(self, handle: Any, handler: str, message_id: UUID, now: float) -> bool:
        cursor = handle.connection.execute(self._insert, (handler, message_id, _at(now)))
        return bool(cursor.rowcount == 1)

    def connection(self, handle: Any) -> Any:
        return handle.connection

    def outbox(self, handle: Any) -> Any:
        return self._writers.get(id(handle.connection))

    def _end(self, handle: _Handle, statement: bytes, before: bytes = b"") -> None:
        connection = handle.connection
        try:
            if not (connection.closed or connection.broken):
                connection.execute(before + statement)
        except BaseException:
            if statement == b"COMMIT":
                _roll_back(connection)
            raise
        finally:
            self._release(handle)

    def commit(self, handle: Any) -> None:
        self._end(handle, b"COMMIT")

    def rollback(self, handle: Any) -> None:
        self._end(handle, b"ROLLBACK")

    def seen(self, handler: str, message_id: UUID) -> bool:
        handle = self._checkout()
        try:
            row = handle.connection.execute(self._seen, (handler, message_id)).fetchone()
            return row is not None
        finally:
            self._release(handle)

    def prune(self, before: float) -> int:
        handle = self._checkout()
        try:
            return int(handle.connection.execute(self._prune, (_at(before),)).rowcount)
        finally:
            self._release(handle)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._writers.clear()
        for connection in idle:
            connection.close()


def _roll_back(connection: psycopg.Connection[Any]) -> None:
    """After a failed ``COMMIT`` (or deferred write): roll back, or close a
    connection that can't (the first error is the one raised)."""
    try:
        if not (connection.closed or connection.broken):
            connection.execute(b"ROLLBACK")
    except Exception:  # noqa: BLE001 - the commit's error is the one raised
        connection.close()


class PostgresInbox(InboxStore):
    """An inbox in PostgreSQL: the processed ``(handler, message_id)``
    pairs, written in the transaction the guarded handler works in.

    Each guarded handler call borrows a connection for its transaction:
    ``BEGIN`` and the inbox ``INSERT ... ON CONFLICT DO NOTHING`` go in one
    round trip, the handler's own SQL follows (`InboxTransaction.run`),
    then ``COMMIT``. Two deliveries of one message at once: the second
    ``INSERT`` waits on the first's uncommitted row; it sees a duplicate
    when the first commits and goes ahead when the first rolls back.

    Args:
        conninfo: a libpq DSN/URL, or a zero-argument callable returning a
            new ``psycopg.Connection`` (the store keeps up to
            ``max_transactions`` of them open).
        pool: an open ``psycopg_pool.ConnectionPool`` to borrow connections
            from instead (one of ``conninfo`` / ``pool``); its size should be
            at least ``max_transactions``.
        table: the inbox table (created on first use with its index).
        max_transactions: inbox transactions open at once; more guarded
            calls wait for one to end (default 16, the consumers' default
            concurrency).
        outbox_table: an outbox table: `InboxTransaction.outbox` then stages
            rows there in the same transaction (an `anycqrs.outbox.PostgresOutbox`).
        defer_begin: begin the transaction and write the inbox row in the
            hop of the handler's first `InboxTransaction.run` instead of in
            a hop of their own before the handler (with a last
            ``run(fn, commit=True)`` a message then takes one thread hop). A
            duplicate is found at that first `run`, which stops the handler
            there: what the handler does before its first `run` is repeated
            on a redelivery, so keep it free of effects (default `False`).
        batch: a consumer handles each lane chunk in one transaction: a
            ``SAVEPOINT`` per guarded handler call (released on success,
            rolled back to on failure), one ``COMMIT`` per chunk, the chunk's
            messages settled after it; a commit that fails or a transaction
            that breaks (a deadlock, a lost connection) has the whole chunk
            handled again (default `False`; see the "Speed" docs section).
        optimistic: with ``batch``, no savepoints: a chunk's first call of a
            handler claims the rows of all the chunk's events of its kind in
            one ``INSERT ... SELECT ... FROM unnest(...) ON CONFLICT DO
            NOTHING RETURNING`` (in the round trip of ``BEGIN``), so later
            calls know at once whether they are duplicates and write no row;
            the commit deletes the claims no call used. A guarded handler
            that fails has the whole chunk rolled back and handled again
            with a savepoint per call (the ``batch`` behaviour), so what
            commits is the same; what re-runs is the chunk's earlier calls
            (default `False`; the fastest form, see the "Speed" docs section).

    Example:
        ```python
        inbox = PostgresInbox("postgresql://app@db/app", outbox_table="anycqrs_outbox")
        mediator = anycqrs.events.bootstrap.bootstrap(events_mapper=bind, inbox=inbox)
        ```
    """

    __slots__ = ()

    def __init__(
        self,
        conninfo: Union[str, Connect, None] = None,
        *,
        pool: psycopg_pool.ConnectionPool[Any] | None = None,
        table: str = DEFAULT_TABLE,
        max_transactions: int = 16,
        outbox_table: str | None = None,
        defer_begin: bool = False,
        batch: bool = False,
        optimistic: bool = False,
    ) -> None:
        super().__init__(
            _PostgresBackend(conninfo, pool, table, max_transactions, outbox_table),
            defer_begin=defer_begin,
            batch=batch,
            optimistic=optimistic,
        )
