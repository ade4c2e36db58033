"""PostgreSQL (psycopg 3, blocking): a store's own connections, the caller's
connection, and schema creation that is safe to race."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ._caller import Caller
from ._common import in_thread

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = [
    "PooledConnections",
    "PostgresCaller",
    "PostgresConnections",
    "create_schema",
    "store_connections",
]

T = TypeVar("T")

Connect = Callable[[], "psycopg.Connection[Any]"]

_IDLE = 0
"""``psycopg.pq.TransactionStatus.IDLE`` (psycopg is imported lazily)."""


def connector(conninfo: str | Connect) -> Connect:
    """A zero-argument connect function from a DSN (or the function itself)."""
    if callable(conninfo):
        return conninfo

    def connect() -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(conninfo)

    return connect


def create_schema(connection: psycopg.Connection[Any], key: str, statements: Iterable[str]) -> None:
    """Run idempotent DDL in one transaction (a savepoint inside an open one),
    serialized across processes by an advisory lock on ``key`` so concurrent
    first uses don't collide."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
        for statement in statements:
            connection.execute(statement.encode())


class PostgresConnections:
    """A store's own connections (autocommit), at most ``size`` at once,
    reused; a broken one is dropped and a new one opened on the next call.
    Blocking; see `run` for async callers.

    Args:
        conninfo: a libpq DSN/URL, or a zero-argument callable returning a new
            ``psycopg.Connection``.
        size: connections open at once (``1``: calls are serialized).
        setup: run once, on the first connection that opens (the schema);
            it commits on its own.
    """

    __slots__ = ("_connect", "_idle", "_lock", "_ready", "_setup", "_slots")

    def __init__(
        self,
        conninfo: str | Connect,
        *,
        size: int = 1,
        setup: Callable[[psycopg.Connection[Any]], object] | None = None,
    ) -> None:
        self._connect = connector(conninfo)
        self._setup = setup
        self._ready = setup is None
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []

    def _open(self) -> psycopg.Connection[Any]:
        connection = self._connect()
        try:
            connection.autocommit = True
            if not self._ready and self._setup is not None:
                self._setup(connection)
                self._ready = True
        except BaseException:
            connection.close()
            raise
        return connection

    def call(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(connection)`` on an idle (or new) connection."""
        with self._slots:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None or connection.closed:
                connection = self._open()
            try:
                return work(connection)
            finally:
                if connection.closed or connection.broken:
                    connection.close()
                else:
                    with self._lock:
                        self._idle.append(connection)

    async def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`call` in a worker thread."""
        return await in_thread(self.call, work)

    def close(self) -> None:
        """Close the idle connections (a later call opens new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class PooledConnections:
    """A store's connections borrowed from the application's
    ``psycopg_pool.ConnectionPool``, one per call (blocking; see `run`).

    Same interface as `PostgresConnections`. Each call runs in the pool's
    ``connection()`` block, which commits the work when it returns and rolls
    it back if it raises (or leaves autocommit work alone, if the pool's
    connections are in autocommit). The pool stays the application's: it
    sizes, checks and closes its connections, and `close` doesn't close it.

    Args:
        pool: an open ``psycopg_pool.ConnectionPool``.
        setup: run once, on the first connection borrowed (the schema); it
            commits on its own.
    """

    __slots__ = ("_lock", "_pool", "_ready", "_setup")

    def __init__(
        self,
        pool: psycopg_pool.ConnectionPool[Any],
        *,
        setup: Callable[[psycopg.Connection[Any]], object] | None = None,
    ) -> None:
        self._pool = pool
        self._setup = setup
        self._ready = setup is None
        self._lock = threading.Lock()

    def call(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work(connection)`` on a connection borrowed from the pool."""
        with self._pool.connection() as connection:
            if not self._ready and self._setup is not None:
                with self._lock:
                    if not self._ready:
                        self._setup(connection)
                        self._ready = True
            return work(connection)

    async def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`call` in a worker thread."""
        return await in_thread(self.call, work)

    def close(self) -> None:
        """Nothing to close: the pool is the application's."""


def store_connections(
    owner: str,
    conninfo: str | Connect | None,
    pool: psycopg_pool.ConnectionPool[Any] | None,
    *,
    size: int = 1,
    setup: Callable[[psycopg.Connection[Any]], object] | None = None,
) -> PostgresConnections | PooledConnections:
    """A store's connections: its own (``conninfo``) or borrowed from the
    application's ``pool``, exactly one of them.

    Raises:
        ValueError: both or neither given; the message names ``owner``.
    """
    if (conninfo is None) == (pool is None):
        raise ValueError(f"{owner} needs a conninfo/dsn or a pool (one of them)")
    if pool is not None:
        return PooledConnections(pool, setup=setup)
    assert conninfo is not None
    return PostgresConnections(conninfo, size=size, setup=setup)


class PostgresCaller(Caller["psycopg.Connection[Any]"]):
    """The caller's psycopg connection (see `Caller`).

    A creation made inside the caller's open transaction remembers that
    transaction's id; it is confirmed when `transaction` commits it, else
    later checks ask PostgreSQL whether it committed (one round trip per use
    until it did, or was rolled back and redone).
    """

    __slots__ = ("_created_in", "key")

    def __init__(self, *args: Any, key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key = key
        self._created_in: int | None = None

    def _probe(self) -> tuple[bool, str | None]:
        """Whether this transaction sees the table, and the status of the
        transaction that created it here (if that is not yet confirmed)."""
        row = self.connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL, txid_status(%s::bigint)",
            (self.table.quoted, self._created_in),
        ).fetchone()
        return (False, None) if row is None else (bool(row[0]), row[1])

    def _check(self) -> bool:
        connection = self.connection
        if connection.info.transaction_status == _IDLE:
            with connection.transaction():  # of its own: commits what it creates
                if not self._probe()[0]:
                    create_schema(connection, self.key, self.statements)
            self._created_in = None
            return True
        exists, creation = self._probe()
        if exists:
            if creation == "in progress":  # created by us, in this transaction
                return False
            self._created_in = None
            return True
        create_schema(connection, self.key, self.statements)  # a savepoint of the caller's
        created = connection.execute("SELECT txid_current()").fetchone()
        self._created_in = None if created is None else int(created[0])
        return False

    def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` inside ``connection.transaction()`` (blocking):
        committed when ``fn`` returns, rolled back if it raises (a savepoint
        when a transaction is already open). Calls are serialized. A commit
        of its own confirms a schema created inside it."""
        connection = self.connection
        with self.lock:
            outermost = connection.info.transaction_status == _IDLE
            with connection.transaction():
                result = fn(*args)
            if outermost and self._created_in is not None:
                self._created_in, self._ready = None, True
            return result
