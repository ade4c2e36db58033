"""The two sides of an outbox: the writer (in the caller's transaction) and the
store the relay reads from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from ._model import OutboxItem, OutboxRecord, OutboxSettlement

__all__ = ["OutboxStore", "OutboxWriter"]


@runtime_checkable
class OutboxWriter(Protocol):
    """Stages messages in the caller's open transaction; never commits.

    Methods are blocking: call them inside the function that runs your
    transaction in a worker thread (``await anyio.to_thread.run_sync(tx)``).

    Example:
        ```python
        def place_order(conn: sqlite3.Connection, order: Order) -> None:
            with conn:  # one transaction: both rows or neither
                conn.execute("INSERT INTO orders (id) VALUES (?)", (order.id,))
                event = NotificationEvent(payload=OrderPlaced(order.id), topic="orders")
                SqliteOutbox(conn).add(event)
        ```
    """

    def add(self, item: OutboxItem, /) -> None:
        """Stage one notification event or broker message."""
        ...

    def add_many(self, items: Iterable[OutboxItem], /) -> None:
        """Stage several messages, in order."""
        ...


@runtime_checkable
class OutboxStore(Protocol):
    """What `anycqrs.outbox.OutboxRelay` needs from a backend.

    Every method is blocking; the relay calls them in a worker thread, one
    thread hop per batch. A store owns its own connection (never the
    application's), and each method commits its own work.

    Example:
        ```python
        store = SqliteOutboxStore("app.db")
        records = store.claim(limit=100, now=utcnow(), lease=60.0, token="relay-1")
        store.settle("relay-1", OutboxSettlement(sent=[r.id for r in records]), now=utcnow())
        ```
    """

    def ensure_schema(self) -> None:
        """Create the table and index if missing (idempotent)."""
        ...

    def claim(
        self, *, limit: int, now: datetime, lease: float, token: str
    ) -> Sequence[OutboxRecord]:
        """Claim up to ``limit`` due pending rows, oldest first, for ``lease``
        seconds under ``token``; rows claimed by someone else (lease not
        expired) are skipped. Returns them ordered by id."""
        ...

    def settle(self, token: str, settlement: OutboxSettlement, *, now: datetime) -> None:
        """Apply the outcome of a claimed batch in one transaction (only to rows
        still claimed with ``token``)."""
        ...

    def close(self) -> None:
        """Close the store's connection."""
        ...
