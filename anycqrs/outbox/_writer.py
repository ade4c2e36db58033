"""What the SQLite and PostgreSQL outbox writers share: staging rows on the
caller's connection, creating the table on first use, and running a whole
transaction in a worker thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import anyio.to_thread

from ._model import OutboxItem

__all__ = ["TransactionalWriter"]

C = TypeVar("C")
T = TypeVar("T")


class TransactionalWriter(Generic[C]):
    """Base of :class:`SqliteOutbox` and :class:`PostgresOutbox` (internal).

    A subclass supplies the ``INSERT`` statement and the database specifics:
    :meth:`ensure_schema`, :meth:`transaction`, how items become rows and
    how several rows are inserted.
    """

    __slots__ = ("_connection", "_create_schema", "_insert", "_lock", "_schema_ready", "_table")

    def __init__(self, connection: C, *, table: str, create_schema: bool, insert: Any) -> None:
        self._connection = connection
        self._table = table
        self._create_schema = create_schema
        self._schema_ready = False
        self._lock = threading.RLock()
        self._insert = insert

    @property
    def connection(self) -> C:
        """The caller's connection."""
        return self._connection

    @property
    def table(self) -> str:
        """The outbox table's name."""
        return self._table

    def ensure_schema(self) -> None:
        """Create the table and its index if missing (idempotent)."""
        raise NotImplementedError

    def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in one transaction on the connection (blocking)."""
        raise NotImplementedError

    def _rows(self, items: Iterable[OutboxItem]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _insert_many(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _schema_checked(self) -> None:
        if self._create_schema and not self._schema_ready:
            self.ensure_schema()

    def add(self, item: OutboxItem, /) -> None:
        """Stage ``item`` (a ``NotificationEvent`` or a broker ``Message``) in
        the current transaction.

        A message whose id is already in the outbox is ignored, so retrying a
        transaction that adds the same event is harmless.

        Raises:
            TypeError: ``item`` is neither a notification event nor a message.
            SerializationError: the event can't be serialized.
        """
        rows = self._rows((item,))
        self._schema_checked()
        self._connection.execute(self._insert, rows[0])  # type: ignore[attr-defined]

    def add_many(self, items: Iterable[OutboxItem], /) -> None:
        """Stage several messages in the current transaction, in order."""
        rows = self._rows(items)
        if not rows:
            return
        self._schema_checked()
        self._insert_many(rows)

    async def run_in_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread, in one transaction (see
        :meth:`transaction`): the async way to write domain rows and events
        atomically.

        Example::

            def place_order(order_id: int) -> None:
                conn.execute("INSERT INTO orders (id) VALUES (?)", (order_id,))
                outbox.add(NotificationEvent(payload=OrderPlaced(order_id), topic="orders"))

            await outbox.run_in_transaction(place_order, 42)
        """
        return await anyio.to_thread.run_sync(self.transaction, fn, *args)
