"""A store's view of the caller's connection: its schema there, one
transaction helper, and the async way to run a transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from ._common import Table, in_thread

__all__ = ["Caller"]

C = TypeVar("C")
T = TypeVar("T")


class Caller(Generic[C]):
    """The application's connection, as a store writing in the application's
    transactions sees it (internal base of `SqliteCaller` and `PostgresCaller`).

    The store's schema is created on first use **inside** the caller's
    transaction (so the caller's own work never fails on a missing table),
    and the store believes it exists only once that is known to be committed:
    until then every use checks again, so a rolled-back creation is redone.

    Args:
        connection: the caller's connection.
        table: the store's main table (its existence stands for the schema).
        statements: the idempotent DDL of the schema.
        create: create the schema on first use (else `ensure_schema` does it).
    """

    __slots__ = ("_ready", "connection", "create", "lock", "statements", "table")

    def __init__(
        self, connection: C, table: Table, statements: Sequence[str], *, create: bool = True
    ) -> None:
        self.connection = connection
        self.table = table
        self.statements = tuple(statements)
        self.create = create
        self.lock = threading.RLock()
        self._ready = False

    def prepare(self) -> None:
        """Before writing: make the schema exist in the current transaction
        (a no-op once its creation is known to be committed)."""
        if self.create and not self._ready:
            self._ready = self._check()

    def ensure_schema(self) -> None:
        """Create the schema if missing (idempotent), in the caller's open
        transaction if there is one, else in a transaction of its own."""
        self._ready = self._check()

    def _check(self) -> bool:
        """Create the schema if this transaction doesn't see it; return
        whether it is known to be committed."""
        raise NotImplementedError

    def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in one transaction on the connection (blocking)."""
        raise NotImplementedError

    async def run_in_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """`transaction` in a worker thread (the one thread hop)."""
        return await in_thread(self.transaction, fn, *args)
