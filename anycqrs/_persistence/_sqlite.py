"""SQLite: the one transaction helper, a store's own connection, and the
caller's connection."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._caller import Caller
from ._common import in_thread

__all__ = ["SqliteCaller", "SqliteConnection", "sqlite_transaction"]

T = TypeVar("T")


def sqlite_transaction(connection: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in one transaction: ``BEGIN IMMEDIATE`` unless one is
    open, commit when ``fn`` returns, roll back if it raises.

    ``IMMEDIATE`` takes SQLite's write lock up front. A deferred ``BEGIN``
    reads first and then tries to upgrade to a write lock while another
    connection commits, a lock cycle SQLite breaks by failing at once with
    "database is locked" instead of waiting for ``timeout``. (A plain
    function, not a context manager: it runs on every write.)
    """
    if not connection.in_transaction:
        connection.execute("BEGIN IMMEDIATE")
    try:
        result = fn(*args)
    except BaseException:
        connection.rollback()
        raise
    connection.commit()
    return result


class SqliteConnection:
    """A store's own connection to a database file, opened on first use,
    used by one thread at a time (blocking; see `run` for async callers).

    Args:
        path: the database file or ``":memory:"``.
        timeout: seconds to wait for another connection's write lock.
        setup: run once on each new connection (pragmas, schema).
    """

    __slots__ = ("_connection", "_lock", "_path", "_setup", "_timeout")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float,
        setup: Callable[[sqlite3.Connection], object] | None = None,
    ) -> None:
        self._path = path
        self._timeout = timeout
        self._setup = setup
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        try:
            if self._setup is not None:
                self._setup(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in autocommit mode (each statement commits)."""
        with self._lock:
            connection = self._connection or self._open()
            return work(connection)

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` in one `sqlite_transaction`."""
        with self._lock:
            connection = self._connection or self._open()
            return sqlite_transaction(connection, work, connection)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`call` in a worker thread."""
        return await in_thread(self.call, work)

    async def run_write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`write` in a worker thread."""
        return await in_thread(self.write, work)

    def close(self) -> None:
        """Close the connection (the next call reopens it)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class SqliteCaller(Caller[sqlite3.Connection]):
    """The caller's ``sqlite3`` connection (see `Caller`).

    A creation made inside the caller's transaction is confirmed when
    `transaction` commits, or by the first check that runs outside a
    transaction; until then each check is one lookup in ``sqlite_master``.
    """

    __slots__ = ("_created",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._created = False

    def _exists(self) -> bool:
        schema = self.table.schema
        master = "sqlite_master" if schema is None else f'"{schema}".sqlite_master'
        row = self.connection.execute(
            f"SELECT 1 FROM {master} WHERE type = 'table' AND name = ?", (self.table.name,)
        ).fetchone()
        return row is not None

    def _create(self) -> None:
        for statement in self.statements:
            self.connection.execute(statement)

    def _check(self) -> bool:
        connection = self.connection
        if not connection.in_transaction:  # what we see is committed
            if not self._exists():
                sqlite_transaction(connection, self._create)
            self._created = False
            return True
        if self._exists():
            # Created by someone else: committed. By us in this still-open
            # transaction (or one whose end we haven't seen): not yet known.
            return not self._created
        self._create()
        self._created = True
        return False

    def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in one `sqlite_transaction` on the caller's
        connection (blocking); calls are serialized. Its commit confirms a
        schema created inside it."""
        with self.lock:
            result = sqlite_transaction(self.connection, fn, *args)
            if self._created:
                self._created, self._ready = False, True
            return result
